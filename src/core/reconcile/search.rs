//! Search relations: a relation whose mapping is a `{combinator, rules}` query maps to that query,
//! and is resolved against the catalog before planning, so the plan compares (and writes)
//! identifiers: a search whose answer did not change costs no write. Pure: the caller runs the
//! searches [`requests`] asks for and hands the answers to [`resolve`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::plan::Issue;
use crate::core::model::{Blueprint, Desired};

/// Whether a relation value is a search query rather than identifiers.
pub fn is_query(value: &Json) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.contains_key("combinator") && o.contains_key("rules"))
}

/// One search to run: the relation's target blueprint and the query, as text so that equal
/// queries from many items are run once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub blueprint: String,
    pub query: String,
}

impl Request {
    pub fn query(&self) -> Json {
        serde_json::from_str(&self.query).unwrap_or(Json::Null)
    }
}

/// A relation of `blueprint` as the blueprints define it: its target and cardinality.
fn relation(blueprints: &[Blueprint], blueprint: &str, name: &str) -> Option<(String, bool)> {
    let def = blueprints
        .iter()
        .find(|b| b.identifier() == blueprint)?
        .relations()
        .into_iter()
        .find(|r| r.name == name)?;
    Some((def.target, def.many))
}

/// The distinct searches the desired entities' search relations need. A relation the blueprints
/// do not define asks for nothing; [`resolve`] reports it.
pub fn requests(desired: &[Desired], blueprints: &[Blueprint]) -> Vec<Request> {
    let mut out = BTreeSet::new();
    for d in desired {
        for (name, value) in d.entity.relations.iter().flatten() {
            if !is_query(value) {
                continue;
            }
            if let Some((target, _)) = relation(blueprints, &d.entity.blueprint, name) {
                out.insert(Request {
                    blueprint: target,
                    query: value.to_string(),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// What resolving search relations left: the entities with identifiers in place of queries,
/// warnings (no match: the relation is null, as Ocean's Port would leave it), and mapping errors
/// (several matches for a single relation, or a relation the blueprint does not define), whose
/// items are left out of `desired` like any other mapping error.
pub struct Resolved {
    pub desired: Vec<Desired>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
}

/// Replaces every search relation with what its search found (`found`, by request).
pub fn resolve(
    desired: Vec<Desired>,
    blueprints: &[Blueprint],
    found: &BTreeMap<Request, Vec<String>>,
) -> Resolved {
    let mut out = Resolved {
        desired: Vec::with_capacity(desired.len()),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    for mut d in desired {
        let issue = |message: String| Issue {
            account: Some(d.origin.account.clone()),
            region: Some(d.origin.region.clone()),
            kind: Some(d.origin.kind.clone()),
            item: Some(d.origin.item.clone()),
            message,
        };
        let mut failed = None;
        let blueprint = d.entity.blueprint.clone();
        for (name, value) in d.entity.relations.iter_mut().flatten() {
            if !is_query(value) {
                continue;
            }
            let Some((target, many)) = relation(blueprints, &blueprint, name) else {
                failed = Some(issue(format!(
                    "relation {name:?} is a search, but blueprint {blueprint:?} defines no relation {name:?} to search in"
                )));
                break;
            };
            let request = Request {
                blueprint: target.clone(),
                query: value.to_string(),
            };
            let ids = found.get(&request).cloned().unwrap_or_default();
            *value = match (ids.len(), many) {
                (0, _) => {
                    out.warnings.push(issue(format!(
                        "relation {name:?}: the search {} found no {target} entity; using null",
                        request.query
                    )));
                    Json::Null
                }
                (_, true) => Json::Array(ids.into_iter().map(Json::String).collect()),
                (1, false) => Json::String(ids[0].clone()),
                (n, false) => {
                    failed = Some(issue(format!(
                        "relation {name:?} takes one {target} entity, but the search {} found {n}: {}",
                        request.query,
                        ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    )));
                    break;
                }
            };
        }
        match failed {
            Some(error) => out.errors.push(error),
            None => out.desired.push(d),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::model::{Entity, Origin, WriteOptions};

    fn blueprints() -> Vec<Blueprint> {
        vec![
            Blueprint(
                json!({"identifier": "service", "title": "S", "schema": {"properties": {}},
                "relations": {"owner": {"target": "team", "many": false, "required": false},
                              "members": {"target": "team", "many": true, "required": false}}}),
            ),
            Blueprint(json!({"identifier": "team", "title": "T", "schema": {"properties": {}}})),
        ]
    }

    fn query(lead: &str) -> Json {
        json!({"combinator": "and", "rules": [{"property": "lead", "operator": "=", "value": lead}]})
    }

    fn service(id: &str, relations: Json) -> Desired {
        let mut entity = Entity::new("service", id);
        entity.relations = relations.as_object().cloned();
        Desired {
            entity,
            origin: Origin {
                account: "111111111111".into(),
                kind: "K".into(),
                region: "us-east-1".into(),
                item: id.into(),
            },
            write: WriteOptions::default(),
        }
    }

    #[test]
    fn each_distinct_search_is_asked_for_once() {
        let desired = vec![
            service("a", json!({"owner": query("ana"), "members": query("ana")})),
            service("b", json!({"owner": query("ana"), "members": "t1"})),
        ];
        let asked = requests(&desired, &blueprints());
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].blueprint, "team");
        assert_eq!(asked[0].query(), query("ana"));
    }

    #[test]
    fn searches_become_identifiers_null_with_a_warning_or_a_mapping_error() {
        let bps = blueprints();
        let desired = vec![
            service("one", json!({"owner": query("ana")})),
            service("many", json!({"members": query("team-of-two")})),
            service("none", json!({"owner": query("nobody")})),
            service("ambiguous", json!({"owner": query("team-of-two")})),
        ];
        let mut found = BTreeMap::new();
        for r in requests(&desired, &bps) {
            let ids: Vec<String> = match r.query().pointer("/rules/0/value").and_then(Json::as_str)
            {
                Some("ana") => vec!["payments".into()],
                Some("team-of-two") => vec!["a".into(), "b".into()],
                _ => vec![],
            };
            found.insert(r, ids);
        }
        let resolved = resolve(desired, &bps, &found);
        let relations: Vec<(String, Json)> = resolved
            .desired
            .iter()
            .map(|d| (d.entity.identifier.clone(), json!(d.entity.relations)))
            .collect();
        assert_eq!(
            relations,
            vec![
                ("one".to_string(), json!({"owner": "payments"})),
                ("many".to_string(), json!({"members": ["a", "b"]})),
                ("none".to_string(), json!({"owner": null})),
            ]
        );
        assert_eq!(resolved.warnings.len(), 1);
        assert!(
            resolved.warnings[0]
                .message
                .contains("found no team entity")
        );
        assert_eq!(resolved.errors.len(), 1);
        assert_eq!(resolved.errors[0].item.as_deref(), Some("ambiguous"));
        assert!(resolved.errors[0].message.contains("found 2: a, b"));
    }
}
