//! Mapping files (Ocean's `port-app-config.yml` format) compiled to jq filters, and the item →
//! entities step. `file` reads the YAML, `expr` compiles expressions (fast forms or jaq via `jq`,
//! the only module that knows jaq), `eval` maps items, `redact` blanks secrets, `run` is
//! `tidemark map`.

mod eval;
mod expr;
mod file;
mod jq;
mod redact;
mod run;
#[cfg(test)]
mod tests;
pub mod watchdog;
pub mod worker;

use std::collections::BTreeSet;

use crate::model::{Entity, KindSpec, RawItem, WriteOptions, is_global_kind};
use crate::yaml::Diagnostic;
use file::{Entry, FileSpec};

pub use redact::Redactor;
pub use run::{MapItems, run_map};

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
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Environment variables jq's `env`/`$ENV` must not see (they hold secrets).
    pub hidden_env: Vec<String>,
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
    pub(crate) options: LoadOptions,
    /// `$ENV` as jq sees it: the process environment minus the hidden names.
    env: jq::Env,
}

impl Mappings {
    /// Compiles every file; all errors of all files are reported together.
    pub fn load(
        sources: &[MappingSource],
        options: &LoadOptions,
    ) -> Result<(Mappings, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut files = Vec::new();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        for source in sources {
            match file::load_file(&source.name, &source.text) {
                Ok((spec, w)) => {
                    files.push(spec);
                    warnings.extend(w);
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        mark_unlisted(&mut files);
        let env = jq::env_object(
            jq::process_env().filter(|(k, _)| !options.hidden_env.iter().any(|h| h == k)),
        );
        let mappings = Mappings {
            files,
            env,
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
            match kinds
                .iter_mut()
                .find(|(k, _)| k.kind == entry.kind && k.model() == entry.model)
            {
                None => kinds.push((
                    KindSpec {
                        kind: entry.kind.clone(),
                        region_policy: entry.region_policy.clone(),
                        use_get_resource_api: entry.use_get_resource_api,
                        resource_model: entry.resource_model.clone(),
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
        kinds
            .into_iter()
            .map(|(mut spec, any_allows_all)| {
                if any_allows_all {
                    spec.region_policy.allow.clear();
                }
                spec
            })
            .collect()
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

    /// Maps one item with every entry of its kind whose region policy admits its region. A
    /// global kind's policy only chooses where it is listed from: its items are mapped whatever
    /// region they carry (an S3 bucket carries its own, which the policy may not list from).
    pub fn map_item(&self, item: &RawItem) -> ItemOutcome {
        let mut outcome = ItemOutcome::default();
        let _watched = watchdog::item_started(item);
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
/// say nothing of their model where no listing without one could have given them.
fn maps_model(entry: &Entry, model: Option<&str>) -> bool {
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
        .filter(|e| e.model.is_none())
        .map(|e| e.kind.clone())
        .collect();
    for entry in files.iter_mut().flat_map(|f| f.entries.iter_mut()) {
        entry.maps_unlisted = entry.model.is_none() || !plain.contains(&entry.kind);
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
/// fast forms, jq 1.7 compatibility), with the whole process environment visible. For `map`-like
/// tooling and the jq conformance suite; compile errors come back as messages.
pub fn eval_expression(
    expression: &str,
    input: &serde_json::Value,
) -> Result<ExprOutcome, Vec<String>> {
    let expr = expr::Expr::compile(expression).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("at character {}: {}", e.offset + 1, e.message))
            .collect::<Vec<_>>()
    })?;
    let env = jq::env_object(jq::process_env());
    let input = expr::Input::Json(input.clone());
    Ok(
        match expr.eval(&input, &mut expr::ValCache::default(), &env) {
            expr::Eval::Value(v) => ExprOutcome::Value(v),
            expr::Eval::Empty => ExprOutcome::Empty,
            expr::Eval::Error(e) => ExprOutcome::Error(e),
        },
    )
}
