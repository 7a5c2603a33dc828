//! Mapping files (Ocean's `port-app-config.yml` format) compiled to jq filters, and the item →
//! entities step. INTERFACE ONLY: the implementation is being written; the signatures below are
//! the contract the rest of the crate codes against.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use crate::model::{Entity, KindSpec, RawItem, WriteOptions};
use crate::yaml::{Diagnostic, Pos};

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
#[derive(Clone, Debug, PartialEq)]
pub struct MappedEntity {
    pub entity: Entity,
    pub write: WriteOptions,
}

/// What mapping one item gave: entities, warnings (a field became null), and mapping errors
/// (the entity was skipped and its scope is incomplete).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemOutcome {
    pub entities: Vec<MappedEntity>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// Every mapping file, compiled.
pub struct Mappings {}

impl Mappings {
    pub fn load(
        _sources: &[MappingSource],
        _options: &LoadOptions,
    ) -> Result<(Mappings, Vec<Diagnostic>), Vec<Diagnostic>> {
        unimplemented!()
    }
    pub fn file_flags(&self) -> Vec<(String, FileFlags)> {
        unimplemented!()
    }
    pub fn kinds(&self) -> Vec<KindSpec> {
        unimplemented!()
    }
    pub fn producible_blueprints(&self, _kind: &str) -> Producible {
        unimplemented!()
    }
    pub fn deletion_threshold(&self) -> f64 {
        unimplemented!()
    }
    pub fn map_item(&self, _item: &RawItem) -> ItemOutcome {
        unimplemented!()
    }
}

/// Blanks secret-looking values in raw items before mapping and in snapshots.
pub struct Redactor {}

impl Redactor {
    pub fn new(_file: &str, _extra: &[(String, Pos)]) -> Result<Redactor, Vec<Diagnostic>> {
        unimplemented!()
    }
    pub fn redact(&self, _item: &mut RawItem) {
        unimplemented!()
    }
}

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

/// Runs `tidemark map`: items in (a JSON object, array, or JSON lines; raw Cloud Control
/// descriptions or items as mappings see them), one entity per output line, skipped items and
/// warnings to `diagnostics`.
pub fn run_map(
    _mappings: &Mappings,
    _options: &MapOptions,
    _input: &mut dyn BufRead,
    _out: &mut dyn Write,
    _diagnostics: &mut dyn Write,
) -> Result<MapSummary, MapInputError> {
    unimplemented!()
}
