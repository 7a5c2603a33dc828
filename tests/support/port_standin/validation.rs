//! How Port checks an entity against its blueprint (Port's docs on properties and relations): each
//! property value against its JSON Schema (type, format, enum, pattern, limits), unknown and
//! computed property keys refused, `schema.required` present, relations declared on the
//! blueprint with the right cardinality and `required` ones set. Property schemas are checked
//! with the `jsonschema` crate, an implementation independent of tidemark's own local-catalog
//! validator, so that the two can disagree where one of them is wrong.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

/// Schema keywords Port adds to a property that JSON Schema does not know, or that only the UI
/// reads; they are left out of the schema the value is checked against.
const PORT_ONLY_KEYWORDS: [&str; 6] = [
    "title",
    "icon",
    "description",
    "enumColors",
    "spec",
    "specAuthentication",
];

/// Compiled property schemas, by the schema's text: blueprints change rarely, entities often.
#[derive(Default)]
pub struct Validators {
    compiled: HashMap<String, Arc<jsonschema::Validator>>,
}

impl Validators {
    fn get(&mut self, schema: &Json) -> Result<Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        if let Some(v) = self.compiled.get(&key) {
            return Ok(Arc::clone(v));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_format("url", is_url)
            .build(schema)
            .map_err(|e| format!("the blueprint's property schema is invalid: {e}"))?;
        let validator = Arc::new(validator);
        self.compiled.insert(key, Arc::clone(&validator));
        Ok(validator)
    }
}

/// Port's `url` format: an absolute http(s) or ftp URL without spaces.
fn is_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .or_else(|| value.strip_prefix("ftp://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

/// The problems of `entity` (the stored result of a write: `title`, `icon`, `team`,
/// `properties`, `relations`) against `blueprint`, empty when Port would take it.
pub fn problems(
    validators: &mut Validators,
    blueprint: &Json,
    entity: &Map<String, Json>,
) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Map::new();
    let schema_props = blueprint
        .pointer("/schema/properties")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let computed: Vec<&String> = [
        "mirrorProperties",
        "calculationProperties",
        "aggregationProperties",
    ]
    .iter()
    .filter_map(|k| blueprint.get(*k).and_then(Json::as_object))
    .flat_map(|m| m.keys())
    .collect();
    let props = entity
        .get("properties")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    for (name, value) in props {
        let Some(def) = schema_props.get(name) else {
            if computed.contains(&name) {
                out.push(format!(
                    "property \"{name}\" is calculated by Port and cannot be set"
                ));
            } else {
                out.push(format!(
                    "property \"{name}\" does not exist in the blueprint's schema"
                ));
            }
            continue;
        };
        if value.is_null() {
            continue;
        }
        let mut schema = def.clone();
        if let Some(obj) = schema.as_object_mut() {
            obj.retain(|k, _| !PORT_ONLY_KEYWORDS.contains(&k.as_str()));
        }
        match validators.get(&schema) {
            Ok(validator) => {
                for error in validator.iter_errors(value) {
                    out.push(format!("properties.{name}: {error}"));
                }
            }
            Err(e) => out.push(format!("properties.{name}: {e}")),
        }
    }
    if let Some(required) = blueprint
        .pointer("/schema/required")
        .and_then(Json::as_array)
    {
        for name in required.iter().filter_map(Json::as_str) {
            if props.get(name).is_none_or(Json::is_null) {
                out.push(format!("required property \"{name}\" is missing"));
            }
        }
    }
    let declared = blueprint
        .get("relations")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let rels = entity
        .get("relations")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    for (name, value) in rels {
        let Some(def) = declared.get(name) else {
            out.push(format!(
                "relation \"{name}\" does not exist in the blueprint"
            ));
            continue;
        };
        let many = def["many"].as_bool().unwrap_or(false);
        let fits = match value {
            Json::Null => true,
            Json::String(_) => !many,
            Json::Array(_) => many,
            _ => false,
        };
        if !fits {
            let wanted = if many {
                "a list of identifiers"
            } else {
                "one identifier"
            };
            out.push(format!("relation \"{name}\" takes {wanted}, got {value}"));
        }
    }
    for (name, def) in declared {
        if def["required"].as_bool() == Some(true) && rels.get(name).is_none_or(Json::is_null) {
            out.push(format!("required relation \"{name}\" is missing"));
        }
    }
    out
}

/// The targets `entity`'s relations point at: (relation, target blueprint, identifier).
pub fn relation_targets(
    blueprint: &Json,
    entity: &Map<String, Json>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Some(rels) = entity.get("relations").and_then(Json::as_object) else {
        return out;
    };
    for (name, value) in rels {
        let Some(target) = blueprint
            .pointer(&format!("/relations/{name}/target"))
            .and_then(Json::as_str)
        else {
            continue;
        };
        let ids: Vec<&str> = match value {
            Json::String(id) => vec![id.as_str()],
            Json::Array(ids) => ids.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        for id in ids {
            out.push((name.clone(), target.to_string(), id.to_string()));
        }
    }
    out
}

/// A value of the declared type for a calculation property: the stand-in cannot run Port's jq,
/// but a search answer must carry the property as Port's would.
pub fn calculated_value(def: &Json, entity_id: &str) -> Json {
    match def["type"].as_str() {
        Some("number") => json!(entity_id.len()),
        Some("boolean") => json!(true),
        Some("object") => json!({"calculated": true}),
        Some("array") => json!([entity_id]),
        _ => json!(format!("calculated:{entity_id}")),
    }
}
