//! Port's search rules evaluated on one entity, for the local catalog's answer to a search
//! relation: combinators (`and`, `or`) over property rules on meta-properties (`$identifier`,
//! `$title`, `$icon`, `$team`) or the entity's properties, with Port's string operators and
//! `isEmpty` / `isNotEmpty`. Port itself answers these with its search.

use serde_json::Value as Json;

use crate::core::model::Entity;

/// A query the local catalog cannot evaluate: the message says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search query {0}")]
pub struct QueryError(String);

/// Whether `entity` matches `query` (`{combinator, rules}`).
pub fn matches(query: &Json, entity: &Entity) -> Result<bool, QueryError> {
    let combinator = query.get("combinator").and_then(Json::as_str);
    let rules = query.get("rules").and_then(Json::as_array);
    let (Some(combinator), Some(rules)) = (combinator, rules) else {
        return Err(QueryError(format!(
            "{query} needs a `combinator` and a list of `rules`"
        )));
    };
    let mut results = rules.iter().map(|rule| {
        if rule.get("combinator").is_some() {
            matches(rule, entity)
        } else {
            rule_matches(rule, entity)
        }
    });
    match combinator {
        "and" => results.try_fold(true, |all, r| r.map(|m| all && m)),
        "or" => results.try_fold(false, |any, r| r.map(|m| any || m)),
        other => Err(QueryError(format!(
            "combinator {other:?} is neither \"and\" nor \"or\""
        ))),
    }
}

fn rule_matches(rule: &Json, entity: &Entity) -> Result<bool, QueryError> {
    let property = rule.get("property").and_then(Json::as_str);
    let operator = rule.get("operator").and_then(Json::as_str);
    let (Some(property), Some(operator)) = (property, operator) else {
        return Err(QueryError(format!(
            "rule {rule} needs a `property` and an `operator`"
        )));
    };
    let field = field(entity, property);
    let value = rule.get("value").unwrap_or(&Json::Null);
    let text = |v: &Json| match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let list = || -> Result<Vec<Json>, QueryError> {
        value
            .as_array()
            .cloned()
            .ok_or_else(|| QueryError(format!("rule {rule}: `{operator}` needs a list value")))
    };
    // A rule on a list field (a `team`, an array property) holds when it holds for an element.
    let elements: Vec<&Json> = match &field {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let any = |test: &dyn Fn(&Json) -> bool| elements.iter().any(|e| test(e));
    let contains = |needle: &Json| {
        let needle = text(needle).unwrap_or_default();
        any(&|e: &Json| text(e).is_some_and(|t| t.contains(&needle)))
    };
    Ok(match operator {
        "=" => any(&|e: &Json| e == value),
        "!=" => !any(&|e: &Json| e == value),
        "in" => {
            let list = list()?;
            any(&|e: &Json| list.contains(e))
        }
        "notIn" => {
            let list = list()?;
            !any(&|e: &Json| list.contains(e))
        }
        "contains" => contains(value),
        "doesNotContains" => !contains(value),
        "containsAny" => list()?.iter().any(contains),
        "beginsWith" | "doesNotBeginsWith" | "endsWith" | "doesNotEndsWith" => {
            let needle = text(value).unwrap_or_default();
            let hit = any(&|e: &Json| {
                text(e).is_some_and(|t| match operator {
                    "beginsWith" | "doesNotBeginsWith" => t.starts_with(&needle),
                    _ => t.ends_with(&needle),
                })
            });
            let negated = operator.starts_with("doesNot");
            hit != negated
        }
        "isEmpty" => is_empty(&field),
        "isNotEmpty" => !is_empty(&field),
        other => {
            return Err(QueryError(format!(
                "operator {other:?} is not one the local catalog evaluates (=, !=, in, notIn, contains, doesNotContains, containsAny, beginsWith, doesNotBeginsWith, endsWith, doesNotEndsWith, isEmpty, isNotEmpty)"
            )));
        }
    })
}

/// The value a rule's `property` names: a meta-property or one of the entity's properties.
fn field(entity: &Entity, property: &str) -> Json {
    let or_null = |v: &Option<Json>| v.clone().unwrap_or(Json::Null);
    match property {
        "$identifier" => Json::String(entity.identifier.clone()),
        "$blueprint" => Json::String(entity.blueprint.clone()),
        "$title" => or_null(&entity.title),
        "$icon" => or_null(&entity.icon),
        "$team" => or_null(&entity.team),
        name => entity
            .properties
            .as_ref()
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or(Json::Null),
    }
}

fn is_empty(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn team(id: &str, title: &str, lead: &str) -> Entity {
        let mut e = Entity::new("team", id);
        e.title = Some(json!(title));
        e.properties = json!({"lead": lead, "tags": ["a", "b"]})
            .as_object()
            .cloned();
        e
    }

    fn q(rules: Json) -> Json {
        json!({"combinator": "and", "rules": rules})
    }

    #[test]
    fn property_and_meta_rules_match_as_port_does() {
        let e = team("payments", "Payments", "ana@example.com");
        let yes = |rules: Json| matches(&q(rules), &e).expect("evaluates");
        assert!(yes(
            json!([{"property": "$identifier", "operator": "=", "value": "payments"}])
        ));
        assert!(yes(
            json!([{"property": "lead", "operator": "endsWith", "value": "@example.com"}])
        ));
        assert!(yes(
            json!([{"property": "$title", "operator": "in", "value": ["Payments", "x"]}])
        ));
        assert!(yes(
            json!([{"property": "tags", "operator": "=", "value": "b"}])
        ));
        assert!(!yes(
            json!([{"property": "lead", "operator": "doesNotEndsWith", "value": ".com"}])
        ));
        assert!(yes(json!([{"property": "missing", "operator": "isEmpty"}])));
        assert!(
            matches(
                &json!({"combinator": "or", "rules": [
                    {"property": "$identifier", "operator": "=", "value": "other"},
                    {"combinator": "and", "rules": [{"property": "lead", "operator": "beginsWith", "value": "ana"}]}]}),
                &e
            )
            .expect("evaluates")
        );
    }

    #[test]
    fn queries_the_local_catalog_cannot_evaluate_are_errors() {
        let e = team("t", "T", "x");
        assert!(matches(&json!({"rules": []}), &e).is_err());
        assert!(matches(&q(json!([{"property": "lead", "operator": "~"}])), &e).is_err());
        assert!(
            matches(
                &q(json!([{"property": "lead", "operator": "in", "value": "x"}])),
                &e
            )
            .is_err()
        );
    }
}
