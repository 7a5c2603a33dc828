//! Evaluating a search query that `contract` accepted, on one entity as Port renders it.

use serde_json::Value as Json;

/// One entity as a query sees it.
pub struct View<'a> {
    /// Rendered as a search answer would: meta fields, `properties` with computed ones,
    /// `relations`.
    pub rendered: &'a Json,
    /// The User-Agent of its last writer.
    pub datasource: &'a str,
    /// The title of a relation target, for `targetProperty: "$title"`.
    pub title_of: &'a dyn Fn(&str, &str) -> Option<String>,
    /// The blueprint a relation points to, by relation name.
    pub target_of: &'a dyn Fn(&str) -> Option<String>,
    /// Whether this entity relates to the entity (blueprint, identifier) through any relation,
    /// either way, for `relatedTo`.
    pub related_to: &'a dyn Fn(&str, &str) -> bool,
}

pub fn matches(query: &Json, view: &View<'_>) -> bool {
    if let Some(combinator) = query.get("combinator").and_then(Json::as_str) {
        let rules = query["rules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        return match combinator {
            "or" => rules.iter().any(|r| matches(r, view)),
            _ => rules.iter().all(|r| matches(r, view)),
        };
    }
    let operator = query["operator"].as_str().unwrap_or_default();
    let value = query.get("value").unwrap_or(&Json::Null);
    if operator == "relatedTo" {
        let blueprint = query["blueprint"].as_str().unwrap_or_default();
        let ids: Vec<&str> = match value {
            Json::String(id) => vec![id.as_str()],
            Json::Array(ids) => ids.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        return ids.iter().any(|id| (view.related_to)(blueprint, id));
    }
    let field = if let Some(relation) = query.get("relation").and_then(Json::as_str) {
        relation_field(
            view,
            relation,
            query.get("targetProperty").and_then(Json::as_str),
        )
    } else {
        property_field(view, query["property"].as_str().unwrap_or_default())
    };
    apply(operator, &field, value)
}

fn property_field(view: &View<'_>, property: &str) -> Json {
    let rendered = view.rendered;
    match property {
        "$datasource" => Json::String(view.datasource.to_string()),
        meta if meta.starts_with('$') => rendered.get(&meta[1..]).cloned().unwrap_or(Json::Null),
        name => rendered
            .pointer(&format!("/properties/{name}"))
            .cloned()
            .unwrap_or(Json::Null),
    }
}

fn relation_field(view: &View<'_>, relation: &str, target_property: Option<&str>) -> Json {
    let value = view
        .rendered
        .pointer(&format!("/relations/{relation}"))
        .cloned()
        .unwrap_or(Json::Null);
    if target_property != Some("$title") {
        return value;
    }
    let target = (view.target_of)(relation).unwrap_or_default();
    let title = |id: &Json| -> Json {
        id.as_str()
            .and_then(|id| (view.title_of)(&target, id))
            .map_or(Json::Null, Json::String)
    };
    match &value {
        Json::Array(ids) => Json::Array(ids.iter().map(title).collect()),
        Json::Null => Json::Null,
        id => title(id),
    }
}

fn is_empty(field: &Json) -> bool {
    match field {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A string rule on a list field (a many-relation, an array property) holds when it holds for any
/// element; `!=` and the negated operators hold when no element matches the positive form.
fn apply(operator: &str, field: &Json, value: &Json) -> bool {
    let negated = match operator {
        "!=" => Some("="),
        "notIn" => Some("in"),
        "doesNotContains" => Some("contains"),
        "doesNotBeginsWith" => Some("beginsWith"),
        "doesNotEndsWith" => Some("endsWith"),
        "isNotEmpty" => Some("isEmpty"),
        _ => None,
    };
    if let Some(positive) = negated {
        return !apply(positive, field, value);
    }
    if operator == "isEmpty" {
        return is_empty(field);
    }
    let elements: Vec<&Json> = match field {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    elements
        .iter()
        .any(|element| apply_one(operator, element, value))
}

fn apply_one(operator: &str, field: &Json, value: &Json) -> bool {
    let text = field.as_str();
    let needle = value.as_str().unwrap_or_default();
    match operator {
        "=" => field == value,
        "in" | "containsAny" => value.as_array().is_some_and(|list| {
            list.iter().any(|v| match operator {
                "in" => v == field,
                _ => text.zip(v.as_str()).is_some_and(|(t, v)| t.contains(v)),
            })
        }),
        "contains" => text.is_some_and(|t| t.contains(needle)),
        "beginsWith" => text.is_some_and(|t| t.starts_with(needle)),
        "endsWith" => text.is_some_and(|t| t.ends_with(needle)),
        ">" | ">=" | "<" | "<=" => match (field.as_f64(), value.as_f64()) {
            (Some(f), Some(v)) => match operator {
                ">" => f > v,
                ">=" => f >= v,
                "<" => f < v,
                _ => f <= v,
            },
            _ => false,
        },
        _ => false,
    }
}
