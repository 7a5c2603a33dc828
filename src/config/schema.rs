//! Checks config and mapping files against the JSON Schemas in `schemas/` (the same schemas
//! editors use through yaml-language-server), reporting each violation at its YAML position.

use serde_json::Value as Json;

use super::builtin::{CONFIG_SCHEMA, MAPPING_SCHEMA};
use crate::core::yaml::{self, Diagnostic, Node};

/// Config keys whose values are secrets. Schema messages quote the values they reject, so these
/// are replaced before checking; the loader checks their type without quoting them.
const SECRET_KEYS: &[&str] = &["clientId", "clientSecret", "externalId"];

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
    let mut instance = root.to_json();
    if matches!(schema, Schema::Config) {
        hide_secrets(&mut instance);
    }
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

fn hide_secrets(value: &mut Json) {
    match value {
        Json::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *v = Json::String("***".into());
                } else {
                    hide_secrets(v);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(hide_secrets),
        _ => {}
    }
}
