//! Checks config and mapping files against the JSON Schemas in `schemas/` (the same schemas
//! editors use through yaml-language-server), reporting each violation at its YAML position.

use serde_json::Value as Json;

use super::builtin::{CONFIG_SCHEMA, MAPPING_SCHEMA};
use crate::yaml::{self, Diagnostic, Node};

/// Which schema a file follows.
#[derive(Clone, Copy, Debug)]
pub enum Schema {
    Config,
    Mapping,
}

impl Schema {
    fn text(self) -> &'static str {
        match self {
            Schema::Config => CONFIG_SCHEMA,
            Schema::Mapping => MAPPING_SCHEMA,
        }
    }
}

/// Violations of `schema` by the YAML document `text`; a file that does not parse has none here
/// (the loader already reported it).
pub fn check(schema: Schema, file: &str, text: &str) -> Vec<Diagnostic> {
    let Ok(root) = yaml::parse(text) else {
        return Vec::new();
    };
    check_node(schema, file, &root)
}

pub fn check_node(schema: Schema, file: &str, root: &Node) -> Vec<Diagnostic> {
    let schema_json: Json = match serde_json::from_str(schema.text()) {
        Ok(v) => v,
        Err(e) => {
            return vec![Diagnostic::new(
                file,
                root.pos,
                format!("embedded schema is invalid: {e}"),
            )];
        }
    };
    let validator = match jsonschema::validator_for(&schema_json) {
        Ok(v) => v,
        Err(e) => {
            return vec![Diagnostic::new(
                file,
                root.pos,
                format!("embedded schema is invalid: {e}"),
            )];
        }
    };
    let instance = root.to_json();
    let mut out: Vec<Diagnostic> = validator
        .iter_errors(&instance)
        .map(|e| {
            let pointer = e.instance_path().as_str().to_string();
            let pos = root.at_pointer(&pointer).map_or(root.pos, |n| n.pos);
            let at = if pointer.is_empty() {
                String::new()
            } else {
                format!("{pointer}: ")
            };
            Diagnostic::new(file, pos, format!("schema: {at}{e}"))
        })
        .collect();
    out.sort_by_key(|a| a.pos);
    out.dedup();
    out
}
