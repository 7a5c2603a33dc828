//! `tidemark.yaml`: raw YAML → validated [`Config`] with every mapping compiled.
//!
//! Loading happens in two stages, like ripgrep's low-level and high-level arguments: the YAML is
//! parsed into a positioned tree ([`crate::core::yaml`]), then each section is checked and converted,
//! collecting every problem as a `file:line:col` [`Diagnostic`] instead of stopping at the first.
//! `${VAR}` substitution happens on scalar values after parsing; secrets may come from `*File`
//! keys; Port's and Ocean's environment variables fill keys the file leaves out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::adapters::aws::{AwsConfig, MemberAuth};
use crate::adapters::port::PortConfig;
use crate::core::mapping::{LoadOptions, MappingSource, Mappings, Observer, Producible, Redactor};
use crate::core::model::{Blueprint, hex};
use crate::core::report::Regions;
use crate::core::secret::Secret;
use crate::core::shard::{MAX_SHARDS, Shard, ShardError, ShardIndex, ShardSetting};
use crate::core::yaml::{self, Diagnostic, Node, Pos, Reader, Value};

pub mod builtin;
pub mod print;
pub mod schema;

/// The validated configuration.
pub struct Config {
    /// The config file, as given.
    pub path: PathBuf,
    pub integration: Integration,
    pub source: SourceConfig,
    pub catalog: CatalogConfig,
    pub mappings: Mappings,
    /// Every mapping file, in load order (for hashing and reload detection).
    pub mapping_files: Vec<MappingSource>,
    /// Blueprint definitions from the mapping folders' `blueprints.json`.
    pub blueprints: Vec<Blueprint>,
    pub redactor: Redactor,
    pub resync_interval: Duration,
    pub watch_cache_limit_mib: u64,
    /// `shard:` as written (an `auto` index is resolved at run time, see [`Config::resolve_shard`]).
    pub shard_setting: Option<ShardSetting>,
    /// The accounts this process owns: `--shard`, else `shard:`; none = every account.
    pub shard: Option<Shard>,
    /// Files and folders a daemon watches for changes.
    pub watched_paths: Vec<PathBuf>,
    /// Hash of the config file and every mapping and blueprint file.
    pub hash: String,
    /// Hashes of the sections, so a reload can tell what changed.
    pub section_hashes: SectionHashes,
}

impl Config {
    /// Every blueprint the mappings can write: those named by a constant `blueprint`
    /// expression and those defined in `blueprints.json`, sorted.
    pub fn mapped_blueprints(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = self
            .blueprints
            .iter()
            .map(|b| b.identifier().to_string())
            .collect();
        for kind in self.mappings.kinds() {
            if let Producible::Only(named) = self.mappings.producible_blueprints(&kind.kind) {
                out.extend(named);
            }
        }
        out.into_iter().collect()
    }

    /// Decides the shard this process runs as: `flag` (`--shard`) wins over `shard:` in the
    /// config, whose `auto` index comes from the pod name in `HOSTNAME`.
    pub fn resolve_shard(&mut self, flag: Option<Shard>, env: &dyn Env) -> Result<(), ShardError> {
        self.shard = match (flag, &self.shard_setting) {
            (Some(flag), _) => Some(flag),
            (None, Some(setting)) => Some(setting.resolve(env.var("HOSTNAME").as_deref())?),
            (None, None) => None,
        };
        Ok(())
    }

    /// Whether `blueprint` is defined in a `blueprints.json`, so that `apply` creates it.
    pub fn defines_blueprint(&self, blueprint: &str) -> bool {
        self.blueprints.iter().any(|b| b.identifier() == blueprint)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("integration", &self.integration)
            .field("source", &self.source)
            .field("catalog", &self.catalog)
            .field(
                "mapping_files",
                &self
                    .mapping_files
                    .iter()
                    .map(|m| &m.name)
                    .collect::<Vec<_>>(),
            )
            .field("blueprints", &self.blueprints.len())
            .field("resync_interval", &self.resync_interval)
            .field("watch_cache_limit_mib", &self.watch_cache_limit_mib)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SectionHashes {
    pub integration: String,
    pub source: String,
    pub catalog: String,
    pub mappings: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Integration {
    pub identifier: String,
    /// `$datasource`/owner prefixes whose entities tidemark may take over.
    pub adopt: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    Aws(AwsConfig),
    Snapshot { path: PathBuf, regions: Regions },
}

impl SourceConfig {
    pub fn regions(&self) -> Regions {
        match self {
            SourceConfig::Aws(aws) => aws.regions.clone(),
            SourceConfig::Snapshot { regions, .. } => regions.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CatalogConfig {
    Local { path: PathBuf },
    Port(PortConfig),
}

/// What the process gives a config: environment variables (tests pass a map instead of the
/// process environment) and the observer mappings are loaded with.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// Every variable jq's `$ENV` may show (secrets are taken out later).
    fn vars(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Watches mapping evaluation (the binary's time limit); none by default.
    fn observer(&self) -> Option<Arc<dyn Observer>> {
        None
    }
}

/// The process environment, with the observer mappings are loaded with.
#[derive(Clone, Default)]
pub struct ProcessEnv {
    pub observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for ProcessEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessEnv")
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn vars(&self) -> Vec<(String, String)> {
        process_vars()
    }

    fn observer(&self) -> Option<Arc<dyn Observer>> {
        self.observer.clone()
    }
}

/// The process environment as text. A variable whose name or value is not UTF-8 cannot be a jq
/// string, so it is left out (`std::env::vars` would panic on it).
pub fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Variables that always hold secrets; jq's `env` never sees them.
pub const SECRET_ENV_VARS: &[&str] = &[
    "PORT_CLIENT_ID",
    "PORT_CLIENT_SECRET",
    "OCEAN__PORT__CLIENT_ID",
    "OCEAN__PORT__CLIENT_SECRET",
    "OCEAN__INTEGRATION__CONFIG__EXTERNAL_ID",
    "OCEAN__INTEGRATION__CONFIG__AWS_ACCESS_KEY_ID",
    "OCEAN__INTEGRATION__CONFIG__AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Bounds of the numeric settings: far beyond any real use, well inside what the timers,
/// semaphores and allocations they feed can hold.
const MAX_ACCOUNTS: f64 = 1000.0;
/// One request every 50 s; the throttle never waits longer than a minute between requests.
const MIN_RPS: f64 = 0.02;
const MAX_RPS: f64 = 10_000.0;
const MAX_CACHE_MIB: f64 = 1_048_576.0;

/// A loaded config with the warnings found on the way.
pub type Loaded = (Config, Vec<Diagnostic>);

/// Reads, validates and compiles the config at `path`. All errors come back together, with the
/// warnings ([`Severity::Warning`](crate::core::yaml::Severity)) after them.
pub fn load(path: &Path, env: &dyn Env) -> Result<Loaded, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = read_config_text(path)
        .map_err(|message| vec![Diagnostic::new(&file, Pos { line: 1, col: 1 }, message)])?;
    load_text(path, &text, env)
}

/// Reads the config file; a symlink loop or a directory is a readable error, not a hang.
fn read_config_text(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) => Err(format!("cannot read the config file: {e}")),
    }
}

/// Like [`load`], with the file's text already read.
pub fn load_text(path: &Path, text: &str, env: &dyn Env) -> Result<Loaded, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Cx {
        read: Reader::new(&file),
        base,
        env,
        secret_vars: Vec::new(),
        substituted: BTreeMap::new(),
    };
    let root = match yaml::parse(text) {
        Ok(mut root) => {
            cx.substitute(&mut root);
            root
        }
        Err(e) => return Err(vec![Diagnostic::new(&file, e.pos(), e.message)]),
    };
    let root_pos = root.pos;
    if root.as_map().is_none() {
        let found = if root.is_null() {
            "an empty file"
        } else {
            root.type_name()
        };
        return Err(vec![Diagnostic::new(
            &file,
            root_pos,
            format!(
                "a tidemark config must be a map with integration, source and catalog; found {found}"
            ),
        )]);
    }
    cx.read.keys(
        &root,
        &[
            "integration",
            "source",
            "catalog",
            "mappings",
            "resync",
            "watch",
            "shard",
        ],
        "",
        &[],
    );

    let integration = cx.integration(root.get("integration"), root_pos);
    let (source, redact) = cx.source(root.get("source"), root_pos);
    let catalog = cx.catalog(root.get("catalog"), root_pos);
    let mapping_entries = cx.mapping_entries(root.get("mappings"));
    let resync_interval = cx.resync(root.get("resync"));
    let watch_cache_limit_mib = cx.watch(root.get("watch"));
    let shard_setting = cx.shard(root.get("shard"));

    let mut hidden_env: Vec<String> = SECRET_ENV_VARS.iter().map(|s| s.to_string()).collect();
    hidden_env.extend(cx.secret_vars.iter().cloned());
    let (mapping_files, blueprint_files, watched) = cx.resolve_mappings(&mapping_entries);
    let blueprints = cx.blueprints(&blueprint_files);
    let redactor = match Redactor::new(&file, &redact) {
        Ok(r) => Some(r),
        Err(errors) => {
            cx.read.errors.extend(errors);
            None
        }
    };
    let mappings = cx.mappings(&mapping_files, hidden_env);

    let Reader {
        errors, warnings, ..
    } = cx.read;
    match (
        integration,
        source,
        catalog,
        mappings,
        redactor,
        errors.is_empty(),
    ) {
        (Some(integration), Some(source), Some(catalog), Some(mappings), Some(redactor), true) => {
            let (hash, section_hashes) = hashes(text, &root, &mapping_files, &blueprint_files);
            let mut watched_paths = vec![path.to_path_buf()];
            watched_paths.extend(watched);
            Ok((
                Config {
                    path: path.to_path_buf(),
                    integration,
                    source,
                    catalog,
                    mappings,
                    mapping_files,
                    blueprints,
                    redactor,
                    resync_interval,
                    watch_cache_limit_mib,
                    shard: shard_setting
                        .as_ref()
                        .and_then(|s| s.resolve(env.var("HOSTNAME").as_deref()).ok()),
                    shard_setting,
                    watched_paths,
                    hash,
                    section_hashes,
                },
                warnings,
            ))
        }
        _ => {
            let mut errors = errors;
            if errors.is_empty() {
                errors.push(Diagnostic::new(&file, root_pos, "the config is incomplete"));
            }
            // The warnings go along: one file's mistake should not hide what another file says.
            errors.extend(warnings);
            Err(errors)
        }
    }
}

/// The whole config's hash (its text and every mapping and blueprint file) and each section's,
/// which tell a reload what changed.
fn hashes(
    text: &str,
    root: &Node,
    mapping_files: &[MappingSource],
    blueprint_files: &[(String, String)],
) -> (String, SectionHashes) {
    let section_hashes = SectionHashes {
        integration: hash_node(root.get("integration")),
        source: hash_node(root.get("source")),
        catalog: hash_node(root.get("catalog")),
        mappings: hash_files(mapping_files, blueprint_files),
    };
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    hasher.update(section_hashes.mappings.as_bytes());
    (hex(&hasher.finalize()), section_hashes)
}

/// How messages name a file: the path with `.` and `dir/..` pairs taken out
/// (`examples/demo/../../mappings/aws.yaml` reads `mappings/aws.yaml`). Only for display: the
/// file is read at the path as written, which a symlinked folder would make differ.
fn display_name(path: &Path) -> String {
    use std::path::Component;
    let mut parts: Vec<Component> = Vec::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let shown: PathBuf = parts.iter().collect();
    if shown.as_os_str().is_empty() {
        ".".to_string()
    } else {
        shown.display().to_string()
    }
}

fn hash_node(node: Option<&Node>) -> String {
    let mut json = node.map(Node::to_json).unwrap_or(Json::Null);
    // JSON objects keep the file's key order; moving a key within a section is no change to it.
    json.sort_all_objects();
    hex(&Sha256::digest(json.to_string().as_bytes()))
}

fn hash_files(mappings: &[MappingSource], blueprints: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for m in mappings {
        hasher.update(m.name.as_bytes());
        hasher.update([0]);
        hasher.update(m.text.as_bytes());
        hasher.update([0]);
    }
    for (name, text) in blueprints {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())
}

/// A mapping entry as written in the config, resolved later.
struct MappingEntry {
    text: String,
    pos: Pos,
}

/// The loading context: where errors go and how paths and variables resolve.
struct Cx<'a> {
    read: Reader,
    base: PathBuf,
    env: &'a dyn Env,
    /// Variables referenced by secret fields, hidden from jq's `env`.
    secret_vars: Vec<String>,
    /// The variables each substituted scalar used, by its position.
    substituted: BTreeMap<Pos, Vec<String>>,
}

impl Cx<'_> {
    /// `${VAR}` in every string scalar; `$${` stays a literal `${`.
    fn substitute(&mut self, node: &mut Node) {
        match &mut node.value {
            Value::Str { text, .. } if text.contains("${") => {
                let mut used = Vec::new();
                match substitute_tracking(text, self.env, &mut used) {
                    Ok(new) => *text = new,
                    Err(message) => self.read.error(node.pos, message),
                }
                self.substituted.insert(node.pos, used);
            }
            Value::Seq(items) => items.iter_mut().for_each(|n| self.substitute(n)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| self.substitute(v)),
            _ => {}
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A secret from `key` or `keyFile`, or from the first environment variable set.
    fn secret(&mut self, entries: &[(Node, Node)], key: &str, env_vars: &[&str]) -> Option<Secret> {
        let file_key = format!("{key}File");
        let direct = entries.iter().find(|(k, _)| k.as_str() == Some(key));
        let from_file = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(file_key.as_str()));
        match (direct, from_file) {
            (Some((k, _)), Some(_)) => {
                self.read
                    .error(k.pos, format!("set either {key} or {file_key}, not both"));
                None
            }
            (Some((_, v)), None) => {
                if let Some(used) = self.substituted.get(&v.pos) {
                    self.secret_vars.extend(used.iter().cloned());
                }
                match &v.value {
                    Value::Str { text, .. } => Some(Secret::new(text.clone())),
                    // YAML would change a number's digits (`0123` is 123), so only the quoted
                    // text is trusted, and the message must not show the value.
                    _ => {
                        self.read.error(
                            v.pos,
                            format!("{key} must be a quoted string, found {}", v.type_name()),
                        );
                        None
                    }
                }
            }
            (None, Some((_, v))) => {
                let path = self.read.text(v, &file_key)?;
                match std::fs::read_to_string(self.path(&path)) {
                    Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']))),
                    Err(e) => {
                        self.read
                            .error(v.pos, format!("{file_key}: cannot read {path}: {e}"));
                        None
                    }
                }
            }
            (None, None) => env_vars.iter().find_map(|name| {
                let value = self.env.var(name)?;
                self.secret_vars.push(name.to_string());
                Some(Secret::new(value))
            }),
        }
    }

    fn integration(&mut self, node: Option<&Node>, root: Pos) -> Option<Integration> {
        let entries = match node {
            Some(n) => self
                .read
                .section(Some(n), "integration", &["identifier", "adopt"])?,
            None => &[],
        };
        let id_node = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("identifier"))
            .map(|(_, v)| v);
        let pos = id_node.map_or(node.map_or(root, |n| n.pos), |n| n.pos);
        let identifier = match id_node {
            Some(n) => self.read.text(n, "integration.identifier")?,
            None => match self.env.var("OCEAN__INTEGRATION__IDENTIFIER") {
                Some(v) => v,
                None => {
                    self.read.error(pos, "integration.identifier is required (or set OCEAN__INTEGRATION__IDENTIFIER)");
                    return None;
                }
            },
        };
        if !is_valid_integration_id(&identifier) {
            self.read.error(
                pos,
                format!(
                    "integration.identifier {identifier:?} must match [a-z0-9][a-z0-9-]{{0,62}}"
                ),
            );
            return None;
        }
        let adopt = self
            .read
            .texts(node.and_then(|n| n.get("adopt")), "integration.adopt");
        Some(Integration { identifier, adopt })
    }

    fn source(
        &mut self,
        node: Option<&Node>,
        root: Pos,
    ) -> (Option<SourceConfig>, Vec<(String, Pos)>) {
        let Some(node) = node else {
            self.read
                .error(root, "source is required (source.type: aws | snapshot)");
            return (None, Vec::new());
        };
        let known = [
            "type",
            "accounts",
            "regions",
            "concurrency",
            "redact",
            "path",
        ];
        let Some(entries) = self.read.section(Some(node), "source", &known) else {
            return (None, Vec::new());
        };
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let redact = match get("redact") {
            Some(n) if !n.is_null() => match n.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.read.text(i, "source.redact").map(|s| (s, i.pos)))
                    .collect(),
                None => {
                    self.read
                        .error(n.pos, "source.redact must be a list of jq paths");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let regions = self.regions(get("regions"));
        let kind = match get("type") {
            Some(n) => self.read.text(n, "source.type"),
            None => {
                self.read
                    .error(node.pos, "source.type is required: aws | snapshot");
                None
            }
        };
        let source = match kind.as_deref() {
            Some("snapshot") => {
                for key in ["accounts", "concurrency"] {
                    if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
                        self.read
                            .error(k.pos, format!("source.{key} applies to `type: aws` only"));
                    }
                }
                match get("path") {
                    Some(p) => self
                        .read
                        .text(p, "source.path")
                        .map(|p| SourceConfig::Snapshot {
                            path: self.path(&p),
                            regions,
                        }),
                    None => {
                        self.read
                            .error(node.pos, "source.path is required for `type: snapshot`");
                        None
                    }
                }
            }
            Some("aws") => {
                if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some("path")) {
                    self.read
                        .error(k.pos, "source.path applies to `type: snapshot` only");
                }
                self.aws(get("accounts"), get("concurrency"), regions)
            }
            Some(other) => {
                let pos = get("type").map_or(node.pos, |n| n.pos);
                self.read.error(
                    pos,
                    format!("source.type must be aws or snapshot, found {other:?}"),
                );
                None
            }
            None => None,
        };
        (source, redact)
    }

    /// `source.regions`: `enabled` (the default) or a list of region names.
    fn regions(&mut self, node: Option<&Node>) -> Regions {
        let Some(n) = node else {
            return Regions::Enabled;
        };
        match &n.value {
            Value::Null => Regions::Enabled,
            Value::Str { text, .. } if text == "enabled" => Regions::Enabled,
            Value::Seq(_) => {
                let list = self.read.texts(Some(n), "source.regions");
                if list.is_empty() {
                    self.read.error(
                        n.pos,
                        "source.regions must not be an empty list (use `enabled`)",
                    );
                }
                for (item, region) in n.as_seq().unwrap_or_default().iter().zip(&list) {
                    if !crate::core::report::is_region_name(region) {
                        let why = crate::core::report::not_a_region_name(region);
                        self.read.error(item.pos, format!("source.regions: {why}"));
                    }
                }
                Regions::List(list)
            }
            _ => {
                self.read.error(
                    n.pos,
                    "source.regions must be `enabled` or a list of regions",
                );
                Regions::Enabled
            }
        }
    }

    /// Compiles every mapping file with the environment and observer the process gives; their
    /// errors and warnings join the config's.
    fn mappings(&mut self, files: &[MappingSource], hidden_env: Vec<String>) -> Option<Mappings> {
        let options = LoadOptions {
            env: self.env.vars(),
            hidden_env,
            observer: self.env.observer(),
        };
        match Mappings::load(files, &options) {
            Ok((mappings, warnings)) => {
                self.read.warnings.extend(warnings);
                Some(mappings)
            }
            Err(diagnostics) => {
                let (errors, warnings): (Vec<_>, Vec<_>) =
                    diagnostics.into_iter().partition(Diagnostic::is_error);
                self.read.errors.extend(errors);
                self.read.warnings.extend(warnings);
                None
            }
        }
    }

    fn aws(
        &mut self,
        accounts: Option<&Node>,
        concurrency: Option<&Node>,
        regions: Regions,
    ) -> Option<SourceConfig> {
        let known = [
            "accountRoleArn",
            "accountRoleArns",
            "externalId",
            "externalIdFile",
            "memberAuth",
            "organizationalUnits",
            "exclude",
        ];
        let entries = match accounts {
            Some(n) => self.read.section(Some(n), "source.accounts", &known)?,
            None => &[],
        };
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let (account_role_arn, account_role_arns) = self.role_arns(accounts, &get)?;
        let external_id = self.secret(
            entries,
            "externalId",
            &["OCEAN__INTEGRATION__CONFIG__EXTERNAL_ID"],
        );
        let member_auth = self.member_auth(get("memberAuth"));
        let organizational_units =
            self.organizational_units(get("organizationalUnits"), account_role_arn.is_some());
        let exclude = self.read.texts(get("exclude"), "exclude");
        let (concurrency_accounts, requests_per_second) = self.concurrency(concurrency);
        Some(SourceConfig::Aws(AwsConfig {
            account_role_arn,
            account_role_arns,
            external_id,
            member_auth,
            organizational_units,
            exclude,
            regions,
            concurrency_accounts,
            requests_per_second,
        }))
    }

    /// `accountRoleArn` (Organizations mode) or `accountRoleArns` (an explicit list), from the
    /// file or else Ocean's variables, each checked to be a role ARN; `None` when both are set.
    #[allow(clippy::type_complexity)]
    fn role_arns<'n>(
        &mut self,
        accounts: Option<&Node>,
        get: &dyn Fn(&str) -> Option<&'n Node>,
    ) -> Option<(Option<String>, Option<Vec<String>>)> {
        let mut account_role_arn =
            get("accountRoleArn").and_then(|n| self.read.text(n, "accountRoleArn"));
        let mut account_role_arns =
            get("accountRoleArns").map(|n| self.read.texts(Some(n), "accountRoleArns"));
        if account_role_arn.is_some() && account_role_arns.is_some() {
            let pos = get("accountRoleArns").map_or(Pos::default(), |n| n.pos);
            self.read.error(pos, "set accountRoleArn (Organizations mode) or accountRoleArns (explicit list), not both");
            return None;
        }
        if account_role_arn.is_none() && account_role_arns.is_none() {
            account_role_arn = self
                .env
                .var("OCEAN__INTEGRATION__CONFIG__ACCOUNT_ROLE_ARN")
                .filter(|s| !s.is_empty());
            if let Some(raw) = self
                .env
                .var("OCEAN__INTEGRATION__CONFIG__ACCOUNT_ROLE_ARNS")
            {
                match serde_json::from_str::<Vec<String>>(&raw) {
                    Ok(list) if !list.is_empty() => account_role_arns = Some(list),
                    Ok(_) => {}
                    Err(e) => self.read.error(
                        accounts.map_or(Pos::default(), |n| n.pos),
                        format!("OCEAN__INTEGRATION__CONFIG__ACCOUNT_ROLE_ARNS must be a JSON array of role ARNs: {e}"),
                    ),
                }
            }
            if account_role_arn.is_some() && account_role_arns.is_some() {
                self.read.error(
                    accounts.map_or(Pos::default(), |n| n.pos),
                    "both OCEAN__INTEGRATION__CONFIG__ACCOUNT_ROLE_ARN and ..._ARNS are set; set one",
                );
                return None;
            }
        }
        for (arn, pos) in account_role_arn
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    get("accountRoleArn").map_or(Pos::default(), |n| n.pos),
                )
            })
            .chain(account_role_arns.iter().flatten().map(|a| {
                (
                    a.clone(),
                    get("accountRoleArns").map_or(Pos::default(), |n| n.pos),
                )
            }))
            .collect::<Vec<_>>()
        {
            if !is_role_arn(&arn) {
                self.read.error(
                    pos,
                    format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/Name)"),
                );
            }
        }
        Some((account_role_arn, account_role_arns))
    }

    fn member_auth(&mut self, node: Option<&Node>) -> MemberAuth {
        match node {
            None => MemberAuth::Auto,
            Some(n) => match self.read.text(n, "memberAuth").as_deref() {
                Some("auto") => MemberAuth::Auto,
                Some("assumeRole") => MemberAuth::AssumeRole,
                Some("webIdentity") => MemberAuth::WebIdentity,
                other => {
                    self.read.error(
                        n.pos,
                        format!(
                            "memberAuth must be auto, assumeRole or webIdentity, found {:?}",
                            other.unwrap_or_default()
                        ),
                    );
                    MemberAuth::Auto
                }
            },
        }
    }

    /// `organizationalUnits`: OU or root ids, only in Organizations mode.
    fn organizational_units(&mut self, node: Option<&Node>, organizations: bool) -> Vec<String> {
        let organizational_units = self.read.texts(node, "organizationalUnits");
        for ou in &organizational_units {
            if !(ou.starts_with("ou-") || ou.starts_with("r-")) {
                let pos = node.map_or(Pos::default(), |n| n.pos);
                self.read.error(
                    pos,
                    format!("organizationalUnits: {ou:?} is not an OU (ou-…) or root (r-…) id"),
                );
            }
        }
        if !organizational_units.is_empty() && !organizations {
            let pos = node.map_or(Pos::default(), |n| n.pos);
            self.read.error(
                pos,
                "organizationalUnits needs accountRoleArn (Organizations mode)",
            );
        }
        organizational_units
    }

    /// `source.concurrency`: accounts at once and requests per second per account.
    fn concurrency(&mut self, node: Option<&Node>) -> (usize, f64) {
        let (mut concurrency_accounts, mut requests_per_second) = (5, 10.0);
        if let Some(entries) = self.read.section(
            node,
            "source.concurrency",
            &["accounts", "requestsPerSecond"],
        ) {
            for (k, v) in entries {
                match k.as_str() {
                    Some("accounts") => {
                        if let Some(n) =
                            self.read
                                .bounded(v, "concurrency.accounts", 1.0..=MAX_ACCOUNTS, true)
                        {
                            concurrency_accounts = n as usize;
                        }
                    }
                    Some("requestsPerSecond") => {
                        if let Some(n) = self.read.bounded(
                            v,
                            "concurrency.requestsPerSecond",
                            MIN_RPS..=MAX_RPS,
                            false,
                        ) {
                            requests_per_second = n;
                        }
                    }
                    _ => {}
                }
            }
        }
        (concurrency_accounts, requests_per_second)
    }

    fn catalog(&mut self, node: Option<&Node>, root: Pos) -> Option<CatalogConfig> {
        let Some(node) = node else {
            self.read
                .error(root, "catalog is required (catalog.type: local | port)");
            return None;
        };
        let known = [
            "type",
            "path",
            "baseUrl",
            "clientId",
            "clientIdFile",
            "clientSecret",
            "clientSecretFile",
        ];
        let entries = self.read.section(Some(node), "catalog", &known)?;
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let kind = match get("type") {
            Some(n) => self.read.text(n, "catalog.type")?,
            None => {
                self.read
                    .error(node.pos, "catalog.type is required: local | port");
                return None;
            }
        };
        match kind.as_str() {
            "local" => {
                for key in [
                    "baseUrl",
                    "clientId",
                    "clientIdFile",
                    "clientSecret",
                    "clientSecretFile",
                ] {
                    if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
                        self.read
                            .error(k.pos, format!("catalog.{key} applies to `type: port` only"));
                    }
                }
                let path = match get("path") {
                    Some(n) => self.read.text(n, "catalog.path").map(|p| self.path(&p))?,
                    None => self.path(".tidemark/catalog.db"),
                };
                Some(CatalogConfig::Local { path })
            }
            "port" => {
                if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str() == Some("path")) {
                    self.read
                        .error(k.pos, "catalog.path applies to `type: local` only");
                }
                let base_url = match get("baseUrl") {
                    Some(n) => self.read.text(n, "catalog.baseUrl")?,
                    None => self
                        .env
                        .var("PORT_BASE_URL")
                        .or_else(|| self.env.var("OCEAN__PORT__BASE_URL"))
                        .unwrap_or_else(|| "https://api.port.io".to_string()),
                };
                let pos = get("baseUrl").map_or(node.pos, |n| n.pos);
                match check_base_url(&base_url) {
                    Ok(None) => {}
                    Ok(Some(warning)) => self.read.warning(pos, warning),
                    Err(message) => self.read.error(pos, message),
                }
                let client_id = self.secret(
                    entries,
                    "clientId",
                    &["PORT_CLIENT_ID", "OCEAN__PORT__CLIENT_ID"],
                );
                let client_secret = self.secret(
                    entries,
                    "clientSecret",
                    &["PORT_CLIENT_SECRET", "OCEAN__PORT__CLIENT_SECRET"],
                );
                if client_id.is_none() {
                    self.read.error(
                        node.pos,
                        "catalog.clientId is required for Port (or set PORT_CLIENT_ID)",
                    );
                }
                if client_secret.is_none() {
                    self.read.error(
                        node.pos,
                        "catalog.clientSecret is required for Port (or clientSecretFile, or set PORT_CLIENT_SECRET)",
                    );
                }
                Some(CatalogConfig::Port(PortConfig {
                    base_url: base_url.trim_end_matches('/').to_string(),
                    client_id: client_id?,
                    client_secret: client_secret?,
                }))
            }
            other => {
                let pos = get("type").map_or(node.pos, |n| n.pos);
                self.read.error(
                    pos,
                    format!("catalog.type must be local or port, found {other:?}"),
                );
                None
            }
        }
    }

    fn mapping_entries(&mut self, node: Option<&Node>) -> Vec<MappingEntry> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return vec![MappingEntry {
                text: builtin::BUILTIN_AWS.to_string(),
                pos: Pos { line: 1, col: 1 },
            }];
        };
        let Some(items) = node.as_seq() else {
            self.read.error(
                node.pos,
                format!(
                    "mappings must be a list of files, folders or builtin:aws, found {}",
                    node.type_name()
                ),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.read.error(node.pos, "mappings must not be empty");
        }
        items
            .iter()
            .filter_map(|n| {
                self.read
                    .text(n, "mappings entry")
                    .map(|text| MappingEntry { text, pos: n.pos })
            })
            .collect()
    }

    /// Mapping files in order, blueprint files (name, text), and paths to watch.
    fn resolve_mappings(
        &mut self,
        entries: &[MappingEntry],
    ) -> (Vec<MappingSource>, Vec<(String, String)>, Vec<PathBuf>) {
        let mut files = Vec::new();
        let mut blueprints: Vec<(String, String)> = Vec::new();
        let mut watched = Vec::new();
        let add_blueprints =
            |dir: &Path, blueprints: &mut Vec<(String, String)>, this: &mut Self| {
                let path = dir.join("blueprints.json");
                let name = display_name(&path);
                if blueprints.iter().any(|(n, _)| *n == name) {
                    return;
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => blueprints.push((name, text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => this.read.errors.push(Diagnostic::new(
                        &name,
                        Pos { line: 1, col: 1 },
                        format!("cannot read: {e}"),
                    )),
                }
            };
        for entry in entries {
            if entry.text == builtin::BUILTIN_AWS {
                files.push(MappingSource {
                    name: builtin::AWS_MAPPING_NAME.to_string(),
                    text: builtin::AWS_MAPPING.to_string(),
                });
                blueprints.push((
                    builtin::AWS_BLUEPRINTS_NAME.to_string(),
                    builtin::AWS_BLUEPRINTS.to_string(),
                ));
                continue;
            }
            if let Some(other) = entry.text.strip_prefix("builtin:") {
                self.read.error(
                    entry.pos,
                    format!("unknown builtin mapping builtin:{other}; the only one is builtin:aws"),
                );
                continue;
            }
            let path = self.path(&entry.text);
            if path.is_dir() {
                watched.push(path.clone());
                let mut names: Vec<PathBuf> = match std::fs::read_dir(&path) {
                    Ok(dir) => dir
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| is_mapping_file_name(p) && !p.is_dir())
                        .collect(),
                    Err(e) => {
                        self.read.error(
                            entry.pos,
                            format!("cannot read the mapping folder {}: {e}", path.display()),
                        );
                        continue;
                    }
                };
                names.sort();
                if names.is_empty() {
                    self.read.warning(
                        entry.pos,
                        format!(
                            "the mapping folder {} has no .yaml or .yml files",
                            path.display()
                        ),
                    );
                }
                for p in names {
                    self.read_mapping(&p, entry.pos, &mut files);
                }
                add_blueprints(&path, &mut blueprints, self);
            } else {
                watched.push(path.clone());
                self.read_mapping(&path, entry.pos, &mut files);
                if let Some(dir) = path.parent() {
                    watched.push(dir.join("blueprints.json"));
                    add_blueprints(dir, &mut blueprints, self);
                }
            }
        }
        (files, blueprints, watched)
    }

    fn read_mapping(&mut self, path: &Path, pos: Pos, files: &mut Vec<MappingSource>) {
        match std::fs::read_to_string(path) {
            Ok(text) => files.push(MappingSource {
                name: display_name(path),
                text,
            }),
            Err(e) => self.read.error(
                pos,
                format!("cannot read the mapping file {}: {e}", path.display()),
            ),
        }
    }

    /// Blueprint definitions from every `blueprints.json`; two different definitions of one
    /// blueprint are an error.
    fn blueprints(&mut self, files: &[(String, String)]) -> Vec<Blueprint> {
        let mut out: Vec<(Blueprint, String)> = Vec::new();
        for (name, text) in files {
            let parsed: Json = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    self.read.errors.push(Diagnostic::new(
                        name,
                        Pos {
                            line: e.line(),
                            col: e.column(),
                        },
                        format!("invalid JSON: {e}"),
                    ));
                    continue;
                }
            };
            let Some(items) = parsed.as_array() else {
                self.read.errors.push(Diagnostic::new(
                    name,
                    Pos { line: 1, col: 1 },
                    "blueprints.json must be a JSON array of blueprint definitions",
                ));
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let bp = Blueprint(item.clone());
                let id = bp.identifier().to_string();
                let at = Pos {
                    line: line_of_index(text, i),
                    col: 1,
                };
                if id.is_empty() || !crate::core::validate::is_valid_blueprint_identifier(&id) {
                    self.read.errors.push(Diagnostic::new(
                        name,
                        at,
                        format!("blueprint #{i} has no valid identifier"),
                    ));
                    continue;
                }
                if item.get("title").and_then(Json::as_str).is_none() {
                    self.read.errors.push(Diagnostic::new(
                        name,
                        at,
                        format!("blueprint {id:?} needs a title"),
                    ));
                }
                match out.iter().find(|(b, _)| b.identifier() == id) {
                    Some((existing, from)) if existing != &bp => {
                        self.read.errors.push(Diagnostic::new(
                            name,
                            at,
                            format!("blueprint {id:?} is defined differently in {from}"),
                        ))
                    }
                    Some(_) => {}
                    None => out.push((bp, name.clone())),
                }
            }
        }
        out.into_iter().map(|(b, _)| b).collect()
    }

    fn resync(&mut self, node: Option<&Node>) -> Duration {
        let default = Duration::from_secs(3600);
        let Some(entries) = self.read.section(node, "resync", &["interval"]) else {
            return default;
        };
        let Some((_, v)) = entries.iter().find(|(k, _)| k.as_str() == Some("interval")) else {
            return default;
        };
        let Some(text) = self.read.text(v, "resync.interval") else {
            return default;
        };
        match humantime::parse_duration(&text) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                self.read
                    .error(v.pos, "resync.interval must be at least 1s");
                default
            }
            Err(e) => {
                self.read.error(
                    v.pos,
                    format!("resync.interval {text:?} is not a duration like 30s, 15m or 1h: {e}"),
                );
                default
            }
        }
    }

    /// `shard: {index: N|auto, count: M}`.
    fn shard(&mut self, node: Option<&Node>) -> Option<ShardSetting> {
        let node = node.filter(|n| !n.is_null())?;
        let entries = self
            .read
            .section(Some(node), "shard", &["index", "count"])?;
        let get = |key: &str| entries.iter().find(|(k, _)| k.as_str() == Some(key));
        let Some((_, count)) = get("count") else {
            self.read
                .error(node.pos, "shard needs count (the number of replicas)");
            return None;
        };
        let count = self
            .read
            .bounded(count, "shard.count", 1.0..=f64::from(MAX_SHARDS), true)?
            as u32;
        let index = match get("index") {
            None => {
                self.read
                    .error(node.pos, "shard needs index (a number, or auto)");
                return None;
            }
            Some((_, v)) if v.as_str() == Some("auto") => ShardIndex::Auto,
            Some((_, v)) => {
                let pos = v.pos;
                let index =
                    self.read
                        .bounded(v, "shard.index", 0.0..=f64::from(MAX_SHARDS), true)?;
                if index >= f64::from(count) {
                    self.read.error(
                        pos,
                        format!(
                            "shard.index {index} is not below shard.count {count} (indexes start at 0)"
                        ),
                    );
                    return None;
                }
                ShardIndex::Fixed(index as u32)
            }
        };
        Some(ShardSetting { index, count })
    }

    fn watch(&mut self, node: Option<&Node>) -> u64 {
        let default = 512;
        let Some(entries) = self.read.section(node, "watch", &["cacheLimitMiB"]) else {
            return default;
        };
        let Some((_, v)) = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("cacheLimitMiB"))
        else {
            return default;
        };
        self.read
            .bounded(v, "watch.cacheLimitMiB", 0.0..=MAX_CACHE_MIB, true)
            .map_or(default, |n| n as u64)
    }
}

/// The approximate line of the `index`-th element of a top-level JSON array (for messages).
fn line_of_index(text: &str, index: usize) -> usize {
    let mut depth = 0usize;
    let mut seen = 0usize;
    let mut line = 1;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 1 && c == '{' {
                    if seen == index {
                        return line;
                    }
                    seen += 1;
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    1
}

/// Replaces `${VAR}` with the variable's value; `$${` is a literal `${`.
pub fn substitute_vars(text: &str, env: &dyn Env) -> Result<String, String> {
    substitute_tracking(text, env, &mut Vec::new())
}

/// [`substitute_vars`], noting in `used` the name of every variable it read.
fn substitute_tracking(
    text: &str,
    env: &dyn Env,
    used: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(format!("unclosed ${{ in {text:?}"));
            };
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("${{{name}}} is not a valid variable name"));
            }
            used.push(name.to_string());
            match env.var(name) {
                Some(value) => out.push_str(&value),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A `*.yaml` / `*.yml` name that is not hidden. Hidden names are editors' lock and swap files
/// (Emacs locks are dangling `.#name.yaml` links) and Kubernetes' `..data` internals. Anything
/// else with the extension must be readable: a broken link is an error, not a silent skip.
fn is_mapping_file_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.') && path.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

/// Whether `url` can be Port's base URL: an error, or a warning for plain HTTP beyond this
/// machine. A URL holding credentials is refused without being quoted, since it would be shown
/// in plans and `validate --print`.
fn check_base_url(url: &str) -> Result<Option<String>, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "catalog.baseUrl must not hold credentials (user:password@); set clientId and clientSecret"
                .into(),
        );
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host);
    match scheme {
        "https" if !host.is_empty() => Ok(None),
        "http" if !host.is_empty() => {
            let local = host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            Ok((!local).then(|| {
                format!(
                    "catalog.baseUrl {url:?} is plain http: the client secret and every entity travel unencrypted"
                )
            }))
        }
        _ => Err(format!(
            "catalog.baseUrl must be an http(s) URL, found {url:?}"
        )),
    }
}

fn is_valid_integration_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name`.
pub fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty())
}

#[cfg(test)]
mod tests;
