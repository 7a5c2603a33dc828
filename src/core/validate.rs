//! Entity validation against a blueprint, the way Port does it, so that the local catalog rejects
//! what Port would reject. Relation *targets* are checked by each catalog (they need a lookup);
//! this checks shapes: property types, formats, enums, limits, required fields, relation keys and
//! cardinality.

use serde_json::{Map, Value as Json};

use crate::core::model::{Blueprint, Entity};

/// Port's entity identifier rule: letters, digits and `@ _ . + : \ / = -`, at most 1000
/// characters, and not `.` or `..`.
pub fn is_valid_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= 1000
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_alphabetic() || c.is_ascii_digit() || "@_.+:\\/=-".contains(c))
}

/// Port's blueprint identifier rule: like entities, without `=`, at most 100 characters.
pub fn is_valid_blueprint_identifier(id: &str) -> bool {
    is_valid_identifier(id) && !id.contains('=') && id.chars().count() <= 100
}

/// Whether `entity` fits `blueprint`. `is_create` enables the `required` checks that Port applies
/// to new entities (with merge, an update only has to keep what it sends valid).
pub fn validate_entity(
    blueprint: &Blueprint,
    entity: &Entity,
    is_create: bool,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    if !is_valid_identifier(&entity.identifier) {
        errors.push(format!(
            "identifier {:?} is not a valid Port identifier",
            entity.identifier
        ));
    }
    for (field, value) in [("title", &entity.title), ("icon", &entity.icon)] {
        if let Some(v) = value
            && !v.is_null()
            && !v.is_string()
        {
            errors.push(format!("{field} must be a string, got {}", type_of(v)));
        }
    }
    if let Some(team) = &entity.team {
        let ok = match team {
            Json::Null | Json::String(_) => true,
            Json::Array(items) => items.iter().all(Json::is_string),
            _ => false,
        };
        if !ok {
            errors.push(format!(
                "team must be a string or a list of strings, got {}",
                type_of(team)
            ));
        }
    }

    let schema = blueprint.properties();
    let empty = Map::new();
    let props = entity.properties.as_ref().unwrap_or(&empty);
    for (key, value) in props {
        match schema.get(key) {
            None => errors.push(format!(
                "property {key:?} is not defined in blueprint {:?}",
                blueprint.identifier()
            )),
            Some(def) => {
                if !value.is_null() {
                    check_value(&format!("properties.{key}"), def, value, &mut errors);
                }
            }
        }
    }
    if is_create {
        let required = blueprint
            .0
            .pointer("/schema/required")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for name in required.iter().filter_map(Json::as_str) {
            if props.get(name).is_none_or(Json::is_null) {
                errors.push(format!("required property {name:?} is missing"));
            }
        }
    }

    let relations = blueprint.relations();
    let rels = entity.relations.as_ref().unwrap_or(&empty);
    for (key, value) in rels {
        let Some(def) = relations.iter().find(|r| &r.name == key) else {
            errors.push(format!(
                "relation {key:?} is not defined in blueprint {:?}",
                blueprint.identifier()
            ));
            continue;
        };
        match (def.many, value) {
            (_, Json::Null) => {}
            (false, Json::String(id)) => {
                if !is_valid_identifier(id) {
                    errors.push(format!(
                        "relation {key:?}: {id:?} is not a valid identifier"
                    ));
                }
            }
            (true, Json::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(id) if is_valid_identifier(id) => {}
                        _ => errors.push(format!(
                            "relation {key:?}: {item} is not a valid identifier"
                        )),
                    }
                }
            }
            (true, other) => errors.push(format!(
                "relation {key:?} has many targets and needs a list, got {}",
                type_of(other)
            )),
            (false, other) => errors.push(format!(
                "relation {key:?} has one target and needs a string, got {}",
                type_of(other)
            )),
        }
    }
    if is_create {
        for def in relations.iter().filter(|r| r.required) {
            if rels.get(&def.name).is_none_or(Json::is_null) {
                errors.push(format!("required relation {:?} is missing", def.name));
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn type_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn check_value(path: &str, def: &Json, value: &Json, errors: &mut Vec<String>) {
    let ty = def.get("type").and_then(Json::as_str).unwrap_or("string");
    let type_ok = match ty {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path} must be {ty}, got {}", type_of(value)));
        return;
    }
    if let Some(options) = def.get("enum").and_then(Json::as_array)
        && !options.contains(value)
    {
        errors.push(format!(
            "{path} must be one of {}, got {value}",
            Json::Array(options.clone())
        ));
    }
    match value {
        Json::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = def.get("minLength").and_then(Json::as_u64)
                && len < min
            {
                errors.push(format!("{path} is shorter than {min} characters"));
            }
            if let Some(max) = def.get("maxLength").and_then(Json::as_u64)
                && len > max
            {
                errors.push(format!("{path} is longer than {max} characters"));
            }
            if let Some(pattern) = def.get("pattern").and_then(Json::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        errors.push(format!("{path} does not match the pattern {pattern:?}"))
                    }
                    _ => {}
                }
            }
            if let Some(format) = def.get("format").and_then(Json::as_str)
                && !format_ok(format, s)
            {
                errors.push(format!("{path} is not a valid {format}: {s:?}"));
            }
        }
        Json::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let bound = |k: &str| def.get(k).and_then(Json::as_f64);
            if bound("minimum").is_some_and(|m| x < m)
                || bound("exclusiveMinimum").is_some_and(|m| x <= m)
            {
                errors.push(format!("{path} is below its minimum"));
            }
            if bound("maximum").is_some_and(|m| x > m)
                || bound("exclusiveMaximum").is_some_and(|m| x >= m)
            {
                errors.push(format!("{path} is above its maximum"));
            }
        }
        Json::Array(items) => {
            if let Some(item_def) = def.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_value(&format!("{path}[{i}]"), item_def, item, errors);
                }
            }
        }
        _ => {}
    }
}

/// The string formats Port checks. Formats that only change how the UI shows a string
/// (markdown, yaml, user, team, …) accept any string.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => is_date_time(s),
        "url" => s.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        }),
        "email" | "idn-email" => s.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace)
        }),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

/// RFC 3339 date-time, e.g. `2026-08-01T10:15:00Z` or with an offset and fraction.
fn is_date_time(s: &str) -> bool {
    static DATE_TIME: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
        )
        .ok()
    });
    DATE_TIME.as_ref().is_some_and(|re| re.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blueprint() -> Blueprint {
        Blueprint(json!({
            "identifier": "svc", "title": "Service",
            "schema": {"properties": {
                "replicas": {"type": "number", "minimum": 0},
                "lang": {"type": "string", "enum": ["go", "rust"]},
                "url": {"type": "string", "format": "url"},
                "tags": {"type": "object"},
                "when": {"type": "string", "format": "date-time"}
            }, "required": ["lang"]},
            "relations": {"account": {"target": "acct", "many": false, "required": false},
                          "deps": {"target": "svc", "many": true, "required": false}}
        }))
    }

    fn entity(props: Json, rels: Json) -> Entity {
        let mut e = Entity::new("svc", "a");
        e.properties = props.as_object().cloned();
        e.relations = rels.as_object().cloned();
        e
    }

    #[test]
    fn identifiers_follow_ports_rule() {
        assert!(is_valid_identifier("arn:aws:s3:::bucket/key+x=y@z"));
        assert!(is_valid_identifier("é-svc"));
        assert!(is_valid_identifier("..."));
        assert!(!is_valid_identifier("."));
        assert!(!is_valid_identifier(".."));
        assert!(!is_valid_identifier("a b"));
        assert!(!is_valid_identifier("a#b"));
        assert!(!is_valid_identifier("100%"));
        assert!(!is_valid_identifier(""));
        assert!(!is_valid_identifier(&"x".repeat(1001)));
    }

    #[test]
    fn a_valid_entity_passes() {
        let e = entity(
            json!({"replicas": 3, "lang": "go", "url": "https://x.io", "when": "2026-01-01T00:00:00Z", "tags": {}}),
            json!({"account": "1", "deps": ["b"]}),
        );
        assert_eq!(validate_entity(&blueprint(), &e, true), Ok(()));
    }

    #[test]
    fn wrong_types_enums_and_unknown_keys_are_rejected() {
        let e = entity(
            json!({"replicas": "3", "lang": "perl", "nope": 1}),
            json!({}),
        );
        let errors = validate_entity(&blueprint(), &e, true).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn relation_cardinality_and_names_are_checked() {
        let e = entity(
            json!({"lang": "go"}),
            json!({"account": ["1"], "deps": "b", "other": "x"}),
        );
        let errors = validate_entity(&blueprint(), &e, true).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn required_properties_matter_only_on_create() {
        let e = entity(json!({"replicas": 1}), json!({}));
        assert!(validate_entity(&blueprint(), &e, true).is_err());
        assert!(validate_entity(&blueprint(), &e, false).is_ok());
    }

    #[test]
    fn nulls_clear_values_and_pass() {
        let e = entity(
            json!({"lang": "go", "replicas": null}),
            json!({"account": null}),
        );
        assert_eq!(validate_entity(&blueprint(), &e, true), Ok(()));
    }
}
