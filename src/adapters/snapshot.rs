//! The snapshot source: what an AWS listing recorded, replayed from files (docs/contract.md,
//! "Snapshots"). The manifest keeps every account's and scope's status, so replaying a snapshot taken
//! during an outage withholds the same deletes the live run would have.
//!
//! ```text
//! DIR/manifest.json
//! DIR/<account-id>/<region>/<Type with :: replaced by _>.json   [{"Identifier", "Properties"}, …]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::adapters::{ItemSink, Source, SourceError};
use crate::core::derive::{self, Derivations, DerivedModels};
use crate::core::model::{KindSpec, RawItem, is_global_kind};
use crate::core::regions::global_order;
use crate::core::report::{
    AccountReport, Discovery, DiscoveryStatus, ListRequest, Listing, MAX_PROPERTIES_DEPTH, Regions,
    SourceReport, is_account_id, is_region_name, is_too_deep, misspelt_region, not_a_region_name,
    not_an_account_id,
};
use crate::core::shard::{self, Shard};

pub const FORMAT_VERSION: &str = "1";
const MANIFEST: &str = "manifest.json";

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: String,
    #[serde(default)]
    pub recorded_at: Option<String>,
    #[serde(default = "Discovery::ok")]
    pub discovery: Discovery,
    pub accounts: Vec<ManifestAccount>,
    #[serde(default)]
    pub scopes: Vec<ManifestScope>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestAccount {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "Email", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "Arn", default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default = "yes")]
    pub assumed: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// Set when the account's regions could not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions_error: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestScope {
    pub account: String,
    pub region: String,
    pub kind: String,
    /// The resource model of a kind listed once per model ([`crate::core::model::model_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub status: ScopeStatus,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeStatus {
    Ok,
    Failed,
    /// The type does not exist in that region ([`Listing::unavailable`]); no file.
    Unavailable,
}

/// One recorded resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedItem {
    #[serde(rename = "Identifier")]
    pub identifier: String,
    /// An object, or a JSON string as Cloud Control returns it.
    #[serde(rename = "Properties", default)]
    pub properties: Json,
    /// The item's own region where it is not the region its global kind was listed from: an S3
    /// bucket lives in one region and is listed from another.
    #[serde(rename = "Region", default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The resource model it was listed with: one file holds every model's items of its
    /// (account, region, kind).
    #[serde(rename = "Model", default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The file a scope's items live in. Its parts come from AWS answers, a manifest and mapping
/// files, so each must be the name it claims to be: nothing that could leave `dir`.
pub fn scope_file(dir: &Path, account: &str, region: &str, kind: &str) -> Result<PathBuf, String> {
    if !is_account_id(account) {
        return Err(not_an_account_id(account));
    }
    if !is_region_name(region) {
        return Err(not_a_region_name(region));
    }
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':') {
        return Err(format!("kind {kind:?} is not a resource type name"));
    }
    Ok(dir
        .join(account)
        .join(region)
        .join(format!("{}.json", kind.replace("::", "_"))))
}

pub struct SnapshotSource {
    dir: PathBuf,
    regions: Regions,
    /// Only this shard's accounts are replayed.
    shard: Option<Shard>,
}

impl SnapshotSource {
    pub fn new(dir: impl Into<PathBuf>, regions: Regions) -> SnapshotSource {
        SnapshotSource {
            dir: dir.into(),
            regions,
            shard: None,
        }
    }

    /// The source replaying only the accounts that `shard` owns (none: every account).
    pub fn with_shard(mut self, shard: Option<Shard>) -> SnapshotSource {
        self.shard = shard;
        self
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Snapshot {
            path: self.dir.display().to_string(),
            message: message.into(),
        }
    }

    pub fn read_manifest(&self) -> Result<Manifest, SourceError> {
        let path = self.dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.error(format!("cannot read {MANIFEST}: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| self.error(format!("{MANIFEST}:{}:{}: {e}", e.line(), e.column())))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(self.error(format!(
                "{MANIFEST}: format_version {:?} is not supported (this tidemark reads {FORMAT_VERSION:?})",
                manifest.format_version
            )));
        }
        Ok(manifest)
    }

    /// Reads one scope file. Any problem fails the scope, never the run.
    fn read_scope(
        &self,
        account: &ManifestAccount,
        region: &str,
        kind: &str,
        model: Option<&str>,
    ) -> Result<Vec<RawItem>, String> {
        let path = scope_file(&self.dir, &account.id, region, kind)?;
        let shown = path
            .strip_prefix(&self.dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("recorded as ok, but {shown} cannot be read: {e}"))?;
        let items: Vec<RecordedItem> = serde_json::from_str(&text)
            .map_err(|e| format!("{shown}:{}:{}: {e}", e.line(), e.column()))?;
        items
            .into_iter()
            .enumerate()
            .filter(|(_, item)| item.model.as_deref() == model)
            .map(|(i, item)| {
                let properties = match item.properties {
                    Json::String(s) => serde_json::from_str(&s).map_err(|e| {
                        format!(
                            "{shown}: item {i} ({}): Properties is not valid JSON: {e}",
                            item.identifier
                        )
                    })?,
                    Json::Null => Json::Object(Default::default()),
                    other => other,
                };
                // As deep as a live listing lets through, so a snapshot never hands on what the
                // live run would have failed.
                if is_too_deep(&properties) {
                    return Err(format!(
                        "{shown}: item {i} ({}): Properties nests more than {MAX_PROPERTIES_DEPTH} levels deep",
                        item.identifier
                    ));
                }
                // Only a global kind's item may live elsewhere than its listing.
                let own_region = match item.region {
                    Some(own) if is_global_kind(kind) => {
                        if !is_region_name(&own) {
                            return Err(format!(
                                "{shown}: item {i} ({}): {}",
                                item.identifier,
                                not_a_region_name(&own)
                            ));
                        }
                        own
                    }
                    _ => region.to_string(),
                };
                Ok(RawItem {
                    account: account.id.clone(),
                    account_name: account.name.clone(),
                    region: own_region,
                    kind: kind.to_string(),
                    identifier: item.identifier,
                    model: item.model,
                    properties,
                })
            })
            .collect()
    }
}

impl SnapshotSource {
    /// One recorded account as this run sees it: its regions (recorded, or the configured
    /// list), and a failure where its id or regions are not AWS names or it has no region.
    fn account_report(&self, manifest: &Manifest, account: &ManifestAccount) -> AccountReport {
        let regions: Vec<String> = match &self.regions {
            Regions::List(list) => list.clone(),
            Regions::Enabled => manifest
                .scopes
                .iter()
                .filter(|s| {
                    s.account == account.id && s.region != crate::core::model::GLOBAL_REGION
                })
                .map(|s| s.region.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        // A manifest is files anyone may have written: an id or region that is not one
        // fails the account as it would live, before it names a file.
        let (assumed, error) = if is_account_id(&account.id) {
            (account.assumed, account.error.clone())
        } else {
            (false, Some(not_an_account_id(&account.id)))
        };
        // As live, where an empty ListRegions answer is an error: an account with no region
        // has nothing listed, which must not read as "all of its resources are gone".
        let regions_error = account
            .regions_error
            .clone()
            .or_else(|| misspelt_region(&regions))
            .or_else(|| {
                regions
                    .is_empty()
                    .then(|| "the snapshot records no region for this account".to_string())
            });
        AccountReport {
            id: account.id.clone(),
            name: account.name.clone(),
            email: account.email.clone(),
            status: account.status.clone(),
            arn: account.arn.clone(),
            role_arn: None,
            assumed,
            error,
            regions,
            regions_error,
        }
    }
}

impl Source for SnapshotSource {
    async fn list(
        &self,
        request: &ListRequest,
        sink: &mut dyn ItemSink,
    ) -> Result<SourceReport, SourceError> {
        let manifest = self.read_manifest()?;
        let derivations = Derivations::compile(&request.kinds);
        let recorded: BTreeMap<ScopeKey<'_>, &ManifestScope> = manifest
            .scopes
            .iter()
            .map(|s| {
                let key = (
                    s.account.as_str(),
                    s.region.as_str(),
                    s.kind.as_str(),
                    s.model.as_deref(),
                );
                (key, s)
            })
            .collect();
        let mut accounts = Vec::new();
        let mut listings = Vec::new();
        for account in &manifest.accounts {
            if !shard::owns(self.shard.as_ref(), &account.id) {
                continue;
            }
            let report = self.account_report(&manifest, account);
            let failed = !report.assumed || report.regions_error.is_some();
            let regions = report.regions.clone();
            accounts.push(report);
            if failed {
                continue;
            }
            // In the live listing's phases, so a kind listed from a parent's items derives its
            // models from the parent items replayed before it.
            let mut models = DerivedModels::default();
            let mut replayed: Vec<Listing> = Vec::new();
            for phase in derive::phases(&request.kinds) {
                for index in phase {
                    let spec = &request.kinds[index];
                    let mut admitted: Vec<String> = regions
                        .iter()
                        .filter(|r| spec.region_policy.admits(r))
                        .cloned()
                        .collect();
                    admitted.sort();
                    let mut replay = Replay {
                        recorded: &recorded,
                        scopes: &manifest.scopes,
                        account,
                        kinds: &request.kinds,
                        derivations: &derivations,
                        models: &mut models,
                        sink: &mut *sink,
                    };
                    if spec.models_from.is_none() {
                        replayed.extend(replay.listings(self, spec, &admitted));
                        continue;
                    }
                    let targets: Vec<Option<&str>> = if is_global_kind(&spec.kind) {
                        vec![None]
                    } else {
                        admitted.iter().map(|r| Some(r.as_str())).collect()
                    };
                    for region in targets {
                        let derived = derive::parents_complete(&replayed, spec, region)
                            .and_then(|()| Ok(replay.models.models(index, region)?));
                        match derived {
                            Ok(children) => {
                                let scope: Vec<String> = match region {
                                    Some(r) => vec![r.to_string()],
                                    None => admitted.clone(),
                                };
                                for (_, model) in children {
                                    let child = derive::with_model(spec, model);
                                    let done = replay.listings(self, &child, &scope);
                                    replayed.extend(done);
                                }
                            }
                            Err(problem) => {
                                let place = region
                                    .map(str::to_string)
                                    .or_else(|| global_order(&admitted).into_iter().next())
                                    .unwrap_or_default();
                                replayed.push(derive::parent_failed(
                                    &account.id,
                                    place,
                                    spec,
                                    problem,
                                ));
                            }
                        }
                    }
                }
            }
            listings.extend(replayed);
        }
        Ok(SourceReport {
            discovery: manifest.discovery,
            accounts,
            listings,
        })
    }
}

/// What replaying one account's listings needs at hand.
struct Replay<'r, 's> {
    recorded: &'r BTreeMap<ScopeKey<'r>, &'r ManifestScope>,
    scopes: &'r [ManifestScope],
    account: &'r ManifestAccount,
    kinds: &'r [KindSpec],
    derivations: &'r Derivations,
    models: &'r mut DerivedModels,
    sink: &'s mut dyn ItemSink,
}

impl Replay<'_, '_> {
    /// Replays `spec` in the `admitted` regions (sorted): a regional kind in each, a global kind
    /// once, from the region it was recorded in. Items of parent kinds give their children's
    /// models on the way.
    fn listings(
        &mut self,
        source: &SnapshotSource,
        spec: &KindSpec,
        admitted: &[String],
    ) -> Vec<Listing> {
        let account = self.account;
        let model = spec.model();
        let regions: Vec<String> = if is_global_kind(&spec.kind) {
            // Listed once, from whichever region served it live: the recorded one.
            let order = global_order(admitted);
            let scope = recorded_global(
                self.scopes,
                (&account.id, &spec.kind, model.as_deref()),
                &order,
            );
            match scope {
                Some(s) => vec![s.region.clone()],
                None => order.into_iter().take(1).collect(),
            }
        } else {
            admitted.to_vec()
        };
        let mut listings = Vec::new();
        for region in regions {
            let key = (
                account.id.as_str(),
                region.as_str(),
                spec.kind.as_str(),
                model.as_deref(),
            );
            let scope = self.recorded.get(&key).copied();
            let unavailable = scope.is_some_and(|s| s.status == ScopeStatus::Unavailable);
            let result = match scope {
                None => Err("not recorded in the snapshot".to_string()),
                Some(s) if s.status != ScopeStatus::Ok => Err(s
                    .error
                    .clone()
                    .unwrap_or_else(|| "recorded as failed".to_string())),
                Some(s) => source.read_scope(account, &s.region, &spec.kind, model.as_deref()),
            };
            let error = match result {
                Ok(items) => {
                    if self.derivations.is_parent(&spec.kind) {
                        self.models.observe(self.kinds, self.derivations, &items);
                    }
                    if !items.is_empty() {
                        self.sink.items(items);
                    }
                    None
                }
                Err(e) => Some(e),
            };
            listings.push(Listing {
                account: account.id.clone(),
                region,
                kind: spec.kind.clone(),
                model: model.clone(),
                error,
                unavailable,
            });
        }
        listings
    }
}

/// (account, region, kind, resource model)
type ScopeKey<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// The recorded scope of a global kind's (account, kind, model): the one in the first region of
/// `order` that has one, preferring scopes recorded `ok`.
fn recorded_global<'m>(
    scopes: &'m [ManifestScope],
    (account, kind, model): (&str, &str, Option<&str>),
    order: &[String],
) -> Option<&'m ManifestScope> {
    let of_kind: Vec<&ManifestScope> = scopes
        .iter()
        .filter(|s| s.account == account && s.kind == kind && s.model.as_deref() == model)
        .collect();
    let rank = |s: &ManifestScope| {
        (
            s.status != ScopeStatus::Ok,
            order
                .iter()
                .position(|r| *r == s.region)
                .unwrap_or(usize::MAX),
        )
    };
    of_kind.into_iter().min_by_key(|s| rank(s))
}

/// Writes a snapshot of a listing: every scope file first, the manifest last, so a folder with a
/// manifest is always complete.
pub fn write_snapshot(
    dir: &Path,
    report: &SourceReport,
    items: &[RawItem],
    recorded_at: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // One file per (account, region, kind), holding the items of every complete listing of it.
    let mut by_scope: BTreeMap<(&str, &str, &str), Vec<RecordedItem>> = BTreeMap::new();
    let mut complete: BTreeSet<ScopeKey<'_>> = BTreeSet::new();
    // A global kind is listed once per account and model, and its items may carry other regions.
    let mut global: BTreeMap<(&str, &str, Option<&str>), &str> = BTreeMap::new();
    for listing in report.listings.iter().filter(|l| l.error.is_none()) {
        by_scope
            .entry((&listing.account, &listing.region, &listing.kind))
            .or_default();
        let model = listing.model.as_deref();
        complete.insert((&listing.account, &listing.region, &listing.kind, model));
        if is_global_kind(&listing.kind) {
            global.insert((&listing.account, &listing.kind, model), &listing.region);
        }
    }
    for item in items {
        let (account, kind, model) = (
            item.account.as_str(),
            item.kind.as_str(),
            item.model.as_deref(),
        );
        let listed_in = if is_global_kind(kind) {
            global.get(&(account, kind, model)).copied()
        } else {
            Some(item.region.as_str())
        };
        let Some(listed_in) = listed_in else { continue };
        if !complete.contains(&(account, listed_in, kind, model)) {
            continue;
        }
        if let Some(list) = by_scope.get_mut(&(account, listed_in, kind)) {
            list.push(RecordedItem {
                identifier: item.identifier.clone(),
                properties: item.properties.clone(),
                region: (item.region != listed_in).then(|| item.region.clone()),
                model: item.model.clone(),
            });
        }
    }
    for ((account, region, kind), list) in &by_scope {
        let path = scope_file(dir, account, region, kind)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut text = serde_json::to_string_pretty(list).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)?;
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION.to_string(),
        recorded_at: Some(recorded_at.to_string()),
        discovery: report.discovery.clone(),
        accounts: report
            .accounts
            .iter()
            .map(|a| ManifestAccount {
                id: a.id.clone(),
                name: a.name.clone(),
                email: a.email.clone(),
                status: a.status.clone(),
                arn: a.arn.clone(),
                assumed: a.assumed,
                error: a.error.clone(),
                regions_error: a.regions_error.clone(),
            })
            .collect(),
        scopes: report
            .listings
            .iter()
            .map(|l| ManifestScope {
                account: l.account.clone(),
                region: l.region.clone(),
                kind: l.kind.clone(),
                model: l.model.clone(),
                status: match (&l.error, l.unavailable) {
                    (None, _) => ScopeStatus::Ok,
                    (Some(_), true) => ScopeStatus::Unavailable,
                    (Some(_), false) => ScopeStatus::Failed,
                },
                error: l.error.clone(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
    text.push('\n');
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join(MANIFEST))
}

impl Discovery {
    pub fn failed(error: impl Into<String>) -> Discovery {
        Discovery {
            status: DiscoveryStatus::Failed,
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{KindSpec, RegionPolicy};
    use serde_json::json;

    fn spec(kind: &str) -> KindSpec {
        KindSpec {
            kind: kind.into(),
            region_policy: RegionPolicy::default(),
            use_get_resource_api: false,
            resource_model: None,
            models_from: None,
        }
    }

    fn write(dir: &Path, rel: &str, value: Json) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, value.to_string()).expect("write");
    }

    async fn list(dir: &Path, kinds: &[&str]) -> (SourceReport, Vec<RawItem>) {
        let source = SnapshotSource::new(dir, Regions::Enabled);
        let mut items = Vec::new();
        let request = ListRequest {
            kinds: kinds.iter().map(|k| spec(k)).collect(),
            regions: Regions::Enabled,
        };
        let report = source
            .list(&request, &mut |batch: Vec<RawItem>| items.extend(batch))
            .await
            .expect("listing");
        (report, items)
    }

    fn manifest(scopes: Json) -> Json {
        json!({"format_version": "1", "recorded_at": "2026-11-01T00:00:00Z",
               "accounts": [{"Id": "222222222222", "Name": "prod", "assumed": true, "error": null},
                            {"Id": "333333333333", "Name": "staging", "assumed": false, "error": "AccessDenied: no"}],
               "scopes": scopes})
    }

    #[tokio::test]
    async fn ok_scopes_are_read_failed_and_unrecorded_ones_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "manifest.json",
            manifest(json!([
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::Lambda::Function", "status": "ok", "error": null},
                {"account": "222222222222", "region": "eu-west-1", "kind": "AWS::Lambda::Function", "status": "failed", "error": "ThrottlingException: slow down"}
            ])),
        );
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_Lambda_Function.json",
            json!([{"Identifier": "fn", "Properties": "{\"FunctionName\":\"fn\"}"}]),
        );
        let (report, items) = list(dir.path(), &["AWS::Lambda::Function", "AWS::SQS::Queue"]).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].properties, json!({"FunctionName": "fn"}));
        assert_eq!(items[0].account_name.as_deref(), Some("prod"));
        let errors: Vec<(&str, &str, Option<&str>)> = report
            .listings
            .iter()
            .map(|l| (l.region.as_str(), l.kind.as_str(), l.error.as_deref()))
            .collect();
        assert_eq!(
            errors,
            vec![
                (
                    "eu-west-1",
                    "AWS::Lambda::Function",
                    Some("ThrottlingException: slow down")
                ),
                ("us-east-1", "AWS::Lambda::Function", None),
                (
                    "eu-west-1",
                    "AWS::SQS::Queue",
                    Some("not recorded in the snapshot")
                ),
                (
                    "us-east-1",
                    "AWS::SQS::Queue",
                    Some("not recorded in the snapshot")
                ),
            ]
        );
        assert!(!report.accounts[1].assumed);
    }

    #[tokio::test]
    async fn an_account_with_no_recorded_region_fails_its_regions() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "manifest.json", manifest(json!([])));
        let (report, _) = list(dir.path(), &["AWS::SQS::Queue"]).await;
        assert_eq!(
            report.accounts[0].regions_error.as_deref(),
            Some("the snapshot records no region for this account")
        );
        assert!(report.listings.is_empty());
    }

    #[tokio::test]
    async fn a_scope_recorded_ok_without_its_file_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "manifest.json",
            manifest(
                json!([{"account": "222222222222", "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null}]),
            ),
        );
        let (report, _) = list(dir.path(), &["AWS::SQS::Queue"]).await;
        assert!(
            report.listings[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("recorded as ok"))
        );
    }

    #[tokio::test]
    async fn global_kinds_are_listed_once_per_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "manifest.json",
            manifest(json!([
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::S3::Bucket", "status": "ok", "error": null},
                {"account": "222222222222", "region": "eu-west-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null}
            ])),
        );
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_S3_Bucket.json",
            json!([{"Identifier": "b", "Properties": {}}]),
        );
        write(
            dir.path(),
            "222222222222/eu-west-1/AWS_SQS_Queue.json",
            json!([]),
        );
        let (report, items) = list(dir.path(), &["AWS::S3::Bucket"]).await;
        // Once, under the region it was recorded in, as the live listing reported it.
        assert_eq!(report.listings.len(), 1);
        assert_eq!(report.listings[0].region, "us-east-1");
        assert_eq!(report.listings[0].error, None);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].region, "us-east-1");
    }

    #[tokio::test]
    async fn written_snapshots_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = SourceReport {
            discovery: Discovery::ok(),
            accounts: vec![AccountReport {
                id: "222222222222".into(),
                name: Some("prod".into()),
                assumed: true,
                regions: vec!["us-east-1".into()],
                ..Default::default()
            }],
            listings: vec![Listing {
                account: "222222222222".into(),
                region: "us-east-1".into(),
                kind: "AWS::SQS::Queue".into(),
                model: None,
                error: None,
                unavailable: false,
            }],
        };
        let item = RawItem {
            account: "222222222222".into(),
            account_name: Some("prod".into()),
            region: "us-east-1".into(),
            kind: "AWS::SQS::Queue".into(),
            identifier: "q".into(),
            // Not in key order: a replay must show mappings the keys as AWS listed them.
            model: None,
            properties: json!({"QueueName": "q", "Attributes": {"Zeta": 1, "Alpha": 2}, "Arn": "a"}),
        };
        write_snapshot(dir.path(), &report, std::slice::from_ref(&item), "now").expect("write");
        let (read, items) = list(dir.path(), &["AWS::SQS::Queue"]).await;
        assert_eq!(items, vec![item.clone()]);
        // `==` on objects ignores order; the text does not.
        assert_eq!(items[0].properties.to_string(), item.properties.to_string());
        assert_eq!(read.listings, report.listings);
    }

    #[tokio::test]
    async fn properties_keep_the_key_order_of_the_recorded_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "manifest.json",
            manifest(json!([
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null}
            ])),
        );
        let text = r#"{"QueueName":"q","Tags":{"team":"core","env":"prod"},"Arn":"a"}"#;
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_SQS_Queue.json",
            json!([{"Identifier": "q", "Properties": text},
                   {"Identifier": "r", "Properties": serde_json::from_str::<Json>(text).expect("json")}]),
        );
        let (_, items) = list(dir.path(), &["AWS::SQS::Queue"]).await;
        assert_eq!(items.len(), 2);
        for item in &items {
            assert_eq!(item.properties.to_string(), text, "{}", item.identifier);
        }
    }

    #[tokio::test]
    async fn properties_deeper_than_sources_pass_on_fail_their_scope_and_the_deepest_allowed_replay()
     {
        let nested = |levels: usize| {
            let mut value = json!(1);
            for _ in 1..levels {
                value = json!([value]);
            }
            json!({"Deep": value})
        };
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "manifest.json",
            manifest(json!([
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null},
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::SNS::Topic", "status": "ok", "error": null},
                {"account": "222222222222", "region": "us-east-1", "kind": "AWS::ECS::Cluster", "status": "ok", "error": null}
            ])),
        );
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_SQS_Queue.json",
            json!([{"Identifier": "q", "Properties": nested(110)}]),
        );
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_SNS_Topic.json",
            json!([{"Identifier": "t", "Properties": nested(110).to_string()}]),
        );
        write(
            dir.path(),
            "222222222222/us-east-1/AWS_ECS_Cluster.json",
            json!([{"Identifier": "c", "Properties": nested(MAX_PROPERTIES_DEPTH)}]),
        );
        let (report, items) = list(
            dir.path(),
            &["AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::ECS::Cluster"],
        )
        .await;
        let error = |kind: &str| {
            report
                .listings
                .iter()
                .find(|l| l.kind == kind)
                .and_then(|l| l.error.clone())
        };
        for (kind, id) in [("AWS::SQS::Queue", "(q)"), ("AWS::SNS::Topic", "(t)")] {
            let error = error(kind).unwrap_or_default();
            assert!(
                error.contains(id) && error.contains("nests more than 100 levels"),
                "{kind}: {error}"
            );
        }
        assert_eq!(error("AWS::ECS::Cluster"), None);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].properties, nested(MAX_PROPERTIES_DEPTH));
    }

    #[tokio::test]
    async fn account_ids_and_regions_in_a_manifest_that_are_not_aws_names_fail_and_are_never_paths()
    {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("snapshot");
        // What a path made of the manifest's words would reach, outside the snapshot.
        write(
            root.path(),
            "outside/us-east-1/AWS_SQS_Queue.json",
            json!([{"Identifier": "stolen", "Properties": {}}]),
        );
        write(
            root.path(),
            "snapshot/222222222222/outside/AWS_SQS_Queue.json",
            json!([{"Identifier": "stolen-too", "Properties": {}}]),
        );
        write(
            &dir,
            "manifest.json",
            json!({"format_version": "1",
            "accounts": [{"Id": "../outside", "assumed": true},
                         {"Id": "222222222222", "assumed": true}],
            "scopes": [
                {"account": "../outside", "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok"},
                {"account": "222222222222", "region": "../snapshot/222222222222/outside", "kind": "AWS::SQS::Queue", "status": "ok"}
            ]}),
        );
        let (report, items) = list(&dir, &["AWS::SQS::Queue"]).await;
        assert_eq!(items, vec![]);
        let odd_id = &report.accounts[0];
        assert!(!odd_id.assumed);
        assert!(
            odd_id
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("12 digits"),
            "{odd_id:?}"
        );
        let odd_region = &report.accounts[1];
        assert!(
            odd_region
                .regions_error
                .as_deref()
                .unwrap_or_default()
                .contains("not a region name"),
            "{odd_region:?}"
        );
        assert_eq!(report.listings, vec![]);
    }

    #[tokio::test]
    async fn a_missing_manifest_is_a_run_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = SnapshotSource::new(dir.path(), Regions::Enabled);
        let request = ListRequest {
            kinds: vec![],
            regions: Regions::Enabled,
        };
        let err = source
            .list(&request, &mut |_: Vec<RawItem>| {})
            .await
            .expect_err("no manifest");
        assert!(
            err.to_string().contains("cannot read manifest.json"),
            "{err}"
        );
    }
}
