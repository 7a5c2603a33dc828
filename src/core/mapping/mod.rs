//! Mapping files (Ocean's `port-app-config.yml` format) compiled to jq filters, and the item →
//! entities step. `file` reads the YAML, `expr` compiles expressions (fast forms or jaq via `jq`,
//! the only module that knows jaq), `eval` maps items, `redact` blanks secrets, `run` is
//! `tidemark map`.

mod eval;
mod expr;
mod file;
mod jq;
mod native;
mod redact;
mod run;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::core::model::{
    ACCOUNT_INFO_KIND, Entity, KindSpec, ModelsFrom, RawItem, RegionPolicy, WriteOptions,
    is_global_kind,
};
use crate::core::yaml::Diagnostic;
use file::{Entry, FileSpec};

pub use redact::Redactor;
pub use run::{InOrder, MapItems, Spread, run_map, spread_map};

/// One mapping file's text and the name errors use for it.
#[derive(Clone, Debug)]
pub struct MappingSource {
    pub name: String,
    pub text: String,
}

/// A mapping file's top-level flags.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FileFlags {
    pub delete_dependent_entities: bool,
    pub create_missing_related_entities: bool,
    pub enable_merge_entity: bool,
    pub entity_deletion_threshold: f64,
}

/// Options for compiling filters.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// The environment jq's `env`/`$ENV` shows, before `hidden_env` is taken out.
    pub env: Vec<(String, String)>,
    /// Environment variables jq's `env`/`$ENV` must not see (they hold secrets).
    pub hidden_env: Vec<String>,
    /// Told which item and expression are being evaluated (a time limit); none by default.
    pub observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("env", &format_args!("{} variables", self.env.len()))
            .field("hidden_env", &self.hidden_env)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Watches evaluation from outside: jq cannot be interrupted, so whoever maps and may end the
/// process (the sandbox's watchdog) learns which item and which expression are running. The
/// core only calls it.
pub trait Observer: Send + Sync {
    /// This thread starts mapping `item`; `expressions` are the texts of the interpreted
    /// expressions by id − 1 (the ids [`evaluating`](Observer::evaluating) receives).
    fn item_started(&self, item: &RawItem, expressions: &Arc<[String]>);
    /// This thread is about to interpret expression `id` (0: one no user wrote).
    fn evaluating(&self, id: usize);
    /// This thread has finished its item.
    fn item_finished(&self);
}

/// Ends an observed item when dropped, whatever way mapping it ends.
struct Observed<'a>(Option<&'a dyn Observer>);

impl Observed<'_> {
    fn start<'a>(
        observer: Option<&'a Arc<dyn Observer>>,
        item: &RawItem,
        expressions: &Arc<[String]>,
    ) -> Observed<'a> {
        let observer = observer.map(|o| &**o);
        if let Some(o) = observer {
            o.item_started(item, expressions);
        }
        Observed(observer)
    }
}

impl Drop for Observed<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.0 {
            o.item_finished();
        }
    }
}

/// Which blueprints a kind's entries can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Producible {
    /// Some blueprint expression is not a constant.
    Any,
    Only(BTreeSet<String>),
}

/// One entity a mapping produced from an item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MappedEntity {
    pub entity: Entity,
    pub write: WriteOptions,
}

/// What mapping one item gave: entities, warnings (a field became null), and mapping errors
/// (the entity was skipped and its scope is incomplete).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ItemOutcome {
    pub entities: Vec<MappedEntity>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// Every mapping file, compiled.
pub struct Mappings {
    files: Vec<FileSpec>,
    /// What was compiled, so a mapping worker process can compile the same.
    sources: Vec<MappingSource>,
    /// Expression texts by id − 1, for the observer.
    expressions: Arc<[String]>,
    pub(crate) options: LoadOptions,
    /// `$ENV` as jq sees it: the process environment minus the hidden names.
    env: jq::Env,
}

impl Mappings {
    /// The files compiled, so a mapping worker process can compile the same.
    pub fn sources(&self) -> &[MappingSource] {
        &self.sources
    }

    /// Compiles every file; all errors of all files are reported together, with the warnings of
    /// every file (those with [`Severity::Warning`](crate::core::yaml::Severity)).
    pub fn load(
        sources: &[MappingSource],
        options: &LoadOptions,
    ) -> Result<(Mappings, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut files = Vec::new();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        let mut expressions = Vec::new();
        for source in sources {
            match file::load_file(&source.name, &source.text, &mut expressions) {
                Ok((spec, w)) => {
                    files.push(spec);
                    warnings.extend(w);
                }
                Err((e, w)) => {
                    errors.extend(e);
                    warnings.extend(w);
                }
            }
        }
        if errors.is_empty() {
            errors = check_models_from(&files);
        }
        if !errors.is_empty() {
            errors.extend(warnings);
            return Err(errors);
        }
        mark_unlisted(&mut files);
        let visible = options.env.iter().cloned();
        let env = jq::Env::new(
            visible.filter(|(k, _)| !options.hidden_env.iter().any(|h| h == k)),
            options.observer.clone(),
        );
        let mappings = Mappings {
            files,
            env,
            expressions: expressions.into(),
            sources: sources.to_vec(),
            options: options.clone(),
        };
        Ok((mappings, warnings))
    }

    pub fn file_flags(&self) -> Vec<(String, FileFlags)> {
        self.files
            .iter()
            .map(|f| (f.name.clone(), f.flags))
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.files.iter().flat_map(|f| f.entries.iter())
    }

    /// One spec per (kind, resource model), in first-appearance order, with the selectors of
    /// the entries that share it combined: a region is listed if any of them admits it. Entries
    /// of one kind with different models are each listed (nodegroups of two clusters).
    pub fn kinds(&self) -> Vec<KindSpec> {
        let mut kinds: Vec<(KindSpec, bool)> = Vec::new();
        for entry in self.entries() {
            let allows_all = entry.region_policy.allow.is_empty();
            let from = models_from(entry);
            match kinds.iter_mut().find(|(k, _)| {
                k.kind == entry.kind && k.model() == entry.model && k.models_from == from
            }) {
                None => kinds.push((
                    KindSpec {
                        kind: entry.kind.clone(),
                        region_policy: entry.region_policy.clone(),
                        use_get_resource_api: entry.use_get_resource_api,
                        resource_model: entry.resource_model.clone(),
                        models_from: from,
                    },
                    allows_all,
                )),
                Some((spec, any_allows_all)) => {
                    spec.use_get_resource_api |= entry.use_get_resource_api;
                    *any_allows_all |= allows_all;
                    for r in &entry.region_policy.allow {
                        if !spec.region_policy.allow.contains(r) {
                            spec.region_policy.allow.push(r.clone());
                        }
                    }
                    spec.region_policy
                        .deny
                        .retain(|r| entry.region_policy.deny.contains(r));
                }
            }
        }
        let mut kinds: Vec<KindSpec> = kinds
            .into_iter()
            .map(|(mut spec, any_allows_all)| {
                if any_allows_all {
                    spec.region_policy.allow.clear();
                }
                spec
            })
            .collect();
        list_parents(&mut kinds);
        kinds
    }

    pub fn producible_blueprints(&self, kind: &str) -> Producible {
        let mut set = BTreeSet::new();
        for entry in self.entries().filter(|e| e.kind == kind) {
            for entity in &entry.entities {
                match entity
                    .blueprint
                    .as_ref()
                    .and_then(|b| b.expr.constant_str())
                {
                    Some(b) => {
                        set.insert(b.to_string());
                    }
                    None => return Producible::Any,
                }
            }
        }
        Producible::Only(set)
    }

    /// Every blueprint named by a constant `blueprint` expression, with where the first such
    /// expression is written (`file:line:col`).
    pub fn constant_blueprints(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for entity in self.entries().flat_map(|e| &e.entities) {
            if let Some(field) = &entity.blueprint
                && let Some(name) = field.expr.constant_str()
            {
                out.entry(name.to_string())
                    .or_insert_with(|| field.at.clone());
            }
        }
        out
    }

    pub fn deletion_threshold(&self) -> f64 {
        self.files
            .iter()
            .map(|f| f.flags.entity_deletion_threshold)
            .reduce(f64::min)
            .unwrap_or(DEFAULT_DELETION_THRESHOLD)
    }

    /// Whether any mapping defines a jq function (a conservative text check). A function that
    /// calls itself without end overflows the stack, which aborts the process that maps;
    /// one-shot commands then map in a [`worker`] child instead, so the failure is an error
    /// naming the item. (A value built millions of levels deep overflows it too; no text check
    /// finds that, and the README says so.)
    pub fn defines_functions(&self) -> bool {
        self.sources.iter().any(|s| s.text.contains("def "))
    }

    /// Whether any entry maps `kind`.
    pub fn maps_kind(&self, kind: &str) -> bool {
        self.entries().any(|e| e.kind == kind)
    }

    /// Maps one item with every entry of its kind whose region policy admits its region. A
    /// global kind's policy only chooses where it is listed from: its items are mapped whatever
    /// region they carry (an S3 bucket carries its own, which the policy may not list from).
    pub fn map_item(&self, item: &RawItem) -> ItemOutcome {
        let mut outcome = ItemOutcome::default();
        let _observed = Observed::start(self.options.observer.as_ref(), item, &self.expressions);
        let global = is_global_kind(&item.kind);
        for entry in self.entries() {
            if entry.kind == item.kind
                && (global || entry.region_policy.admits(&item.region))
                && maps_model(entry, item.model.as_deref())
            {
                eval::map_entry(entry, item, &self.env, &mut outcome);
            }
        }
        outcome
    }
}

/// Whether `entry` maps an item listed with `model`: its own listing's items, and items that
/// say nothing of their model where no listing without one could have given them. A kind listed
/// from a parent's items has only such entries (see [`check_models_from`]), so they map all.
fn maps_model(entry: &Entry, model: Option<&str>) -> bool {
    if entry.models_from.is_some() {
        return true;
    }
    match (entry.model.as_deref(), model) {
        (Some(own), Some(listed)) => own == listed,
        (None, None) => true,
        (Some(_), None) => entry.maps_unlisted,
        (None, Some(_)) => false,
    }
}

/// Sets [`Entry::maps_unlisted`]: an entry with a model also maps model-less items when no entry
/// of its kind, in any file, lists without one.
fn mark_unlisted(files: &mut [FileSpec]) {
    let plain: BTreeSet<String> = files
        .iter()
        .flat_map(|f| f.entries.iter())
        .filter(|e| e.model.is_none() && e.models_from.is_none())
        .map(|e| e.kind.clone())
        .collect();
    for entry in files.iter_mut().flat_map(|f| f.entries.iter_mut()) {
        entry.maps_unlisted = entry.model.is_none() || !plain.contains(&entry.kind);
    }
}

fn models_from(entry: &Entry) -> Option<ModelsFrom> {
    entry.models_from.as_ref().map(|from| ModelsFrom {
        kind: from.kind.clone(),
        model: from.model.expr.text.clone(),
    })
}

/// Makes sure the parent of every kind listed from a parent's items is listed wherever the
/// child is: a spec for the parent is widened to the child's regions, or added (listed for the
/// purpose, mapped by nothing) when no entry lists the parent. Repeated for chains (listener
/// rules from listeners from load balancers).
fn list_parents(kinds: &mut Vec<KindSpec>) {
    loop {
        let mut changed = false;
        let children: Vec<(ModelsFrom, RegionPolicy)> = kinds
            .iter()
            .filter_map(|k| Some((k.models_from.clone()?, k.region_policy.clone())))
            .collect();
        for (from, policy) in children {
            let mut parents = kinds.iter_mut().filter(|k| k.kind == from.kind).peekable();
            if parents.peek().is_none() {
                kinds.push(KindSpec {
                    kind: from.kind.clone(),
                    region_policy: policy,
                    use_get_resource_api: false,
                    resource_model: None,
                    models_from: None,
                });
                changed = true;
                continue;
            }
            for parent in parents {
                changed |= widen(&mut parent.region_policy, &policy);
            }
        }
        if !changed {
            return;
        }
    }
}

/// Widens `policy` to admit every region `other` admits; whether it changed.
fn widen(policy: &mut RegionPolicy, other: &RegionPolicy) -> bool {
    let before = policy.clone();
    if other.allow.is_empty() {
        policy.allow.clear();
    } else if !policy.allow.is_empty() {
        for region in &other.allow {
            if !policy.allow.contains(region) {
                policy.allow.push(region.clone());
            }
        }
    }
    policy.deny.retain(|r| other.deny.contains(r));
    *policy != before
}

/// The checks on `resourceModelsFrom` that span entries and files: a kind listed from a parent's
/// items is listed that way by every entry of it (one listing, shared), from another kind that
/// is listed, without a cycle.
fn check_models_from(files: &[FileSpec]) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let entries: Vec<(&str, &Entry)> = files
        .iter()
        .flat_map(|f| f.entries.iter().map(move |e| (f.name.as_str(), e)))
        .collect();
    let at = |file: &str, entry: &Entry| format!("{file}:{}:{}", entry.pos.line, entry.pos.col);
    for (file, entry) in &entries {
        let Some(from) = &entry.models_from else {
            continue;
        };
        if from.kind == entry.kind {
            errors.push(Diagnostic::new(
                *file,
                entry.pos,
                format!(
                    "resourceModelsFrom.kind names the entry's own kind {}: a kind cannot be listed from its own items",
                    entry.kind
                ),
            ));
        }
        if from.kind == ACCOUNT_INFO_KIND {
            errors.push(Diagnostic::new(
                *file,
                entry.pos,
                format!("resourceModelsFrom cannot derive from the synthetic {ACCOUNT_INFO_KIND}, which is not listed"),
            ));
        }
    }
    // Every entry of a kind listed from a parent shares its one listing.
    let mut first: Vec<(&str, &str, &Entry)> = Vec::new();
    for (file, entry) in &entries {
        match first.iter().find(|(_, kind, _)| *kind == entry.kind) {
            None => first.push((file, &entry.kind, entry)),
            Some((first_file, _, first_entry)) => {
                if models_from(first_entry) != models_from(entry)
                    && (first_entry.models_from.is_some() || entry.models_from.is_some())
                {
                    errors.push(Diagnostic::new(
                        *file,
                        entry.pos,
                        format!(
                            "{} is listed with resourceModelsFrom at {}, so every entry of it must use the same resourceModelsFrom (one listing per parent item serves them all); this one lists it otherwise",
                            entry.kind,
                            at(first_file, first_entry)
                        ),
                    ));
                }
            }
        }
    }
    // No kind may end up listed from its own items through a chain.
    for (file, entry) in &entries {
        if entry
            .models_from
            .as_ref()
            .is_some_and(|f| f.kind == entry.kind)
        {
            continue; // reported above
        }
        let mut seen = vec![entry.kind.as_str()];
        let mut current = entry.models_from.as_ref().map(|f| f.kind.as_str());
        while let Some(parent) = current {
            if seen.contains(&parent) {
                if parent == entry.kind {
                    errors.push(Diagnostic::new(
                        *file,
                        entry.pos,
                        format!(
                            "resourceModelsFrom makes a cycle: {} -> {parent}",
                            seen.join(" -> ")
                        ),
                    ));
                }
                break;
            }
            seen.push(parent);
            current = entries
                .iter()
                .find_map(|(_, e)| (e.kind == parent).then_some(e.models_from.as_ref()))
                .flatten()
                .map(|f| f.kind.as_str());
        }
    }
    errors
}

/// A compiled `selector.resourceModelsFrom.model`: a parent item in, the resource model its
/// children are listed with out. Sources evaluate it on listed items; it sees no environment.
pub struct ModelExpression {
    expr: expr::Expr,
    env: jq::Env,
}

impl ModelExpression {
    pub fn compile(text: &str) -> Result<ModelExpression, String> {
        let expr = expr::Expr::compile(text).map_err(|errs| {
            errs.iter()
                .map(|e| format!("at character {}: {}", e.offset + 1, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(ModelExpression {
            expr,
            env: jq::Env::default(),
        })
    }

    /// The model for one parent item: the expression's first output, which must be an object;
    /// `None` when it gives null or nothing (that item has no children to list).
    pub fn model_for(&self, item: &RawItem) -> Result<Option<serde_json::Value>, String> {
        let input = expr::Input::Item(item);
        match self
            .expr
            .eval(&input, &mut expr::ValCache::default(), &self.env)
        {
            expr::Eval::Value(serde_json::Value::Null) | expr::Eval::Empty => Ok(None),
            expr::Eval::Value(model @ serde_json::Value::Object(_)) => Ok(Some(model)),
            expr::Eval::Value(other) => Err(format!(
                "resourceModelsFrom.model `{}` gave {other} for {}, not an object",
                self.expr.text,
                item.label()
            )),
            expr::Eval::Error(e) => Err(format!(
                "resourceModelsFrom.model `{}` failed on {}: {e}",
                self.expr.text,
                item.label()
            )),
        }
    }
}

/// Ocean's default `entityDeletionThreshold`.
const DEFAULT_DELETION_THRESHOLD: f64 = 0.9;

/// `tidemark map` options: without `kind`, each item's `Type` (or `__Kind`) selects the entries.
#[derive(Clone, Debug, Default)]
pub struct MapOptions {
    pub kind: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
}

/// Counts for `tidemark map`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapSummary {
    pub items: usize,
    pub entities: usize,
    pub skipped: usize,
    pub warnings: usize,
    /// Items with a mapping error (an identifier or blueprint that is not a valid string, a
    /// selector that is not a boolean): exit 3, as in every other command.
    pub mapping_errors: usize,
    /// Items whose kind no entry of the mapping maps, counted per kind.
    pub unmapped: std::collections::BTreeMap<String, usize>,
}

/// Input `tidemark map` cannot read (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MapInputError {
    pub message: String,
}

/// What one jq expression gave on one input: its first output, no output, or an error.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprOutcome {
    Value(serde_json::Value),
    Empty,
    Error(String),
}

/// Evaluates one mapping expression on `input` exactly as mappings do (Ocean's quote rewriting,
/// fast forms, jq 1.7 compatibility), with `env` as jq's `$ENV`. For `map`-like tooling and the
/// jq conformance suite; compile errors come back as messages.
pub fn eval_expression(
    expression: &str,
    input: &serde_json::Value,
    env: &[(String, String)],
) -> Result<ExprOutcome, Vec<String>> {
    let expr = expr::Expr::compile(expression).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("at character {}: {}", e.offset + 1, e.message))
            .collect::<Vec<_>>()
    })?;
    let env = jq::Env::new(env.iter().cloned(), None);
    let input = expr::Input::Json(input.clone());
    Ok(
        match expr.eval(&input, &mut expr::ValCache::default(), &env) {
            expr::Eval::Value(v) => ExprOutcome::Value(v),
            expr::Eval::Empty => ExprOutcome::Empty,
            expr::Eval::Error(e) => ExprOutcome::Error(e),
        },
    )
}
