//! Entity comparison after normalisation (docs/contract.md "Diff"): absent equals `null` (and `[]` for team),
//! numbers compare numerically, team and many-relations compare as sets, and with merge only the
//! fields the mapping defines are compared.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json, json};

use crate::core::model::Entity;

/// Which fields a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareSet {
    pub title: bool,
    pub icon: bool,
    pub team: bool,
    pub properties: BTreeSet<String>,
    pub relations: BTreeSet<String>,
}

impl CompareSet {
    /// With `enableMergeEntity`: exactly what the mapping produces, since Port's merge leaves
    /// everything else in place.
    pub fn merge(desired: &Entity) -> CompareSet {
        CompareSet {
            title: desired.title.is_some(),
            icon: desired.icon.is_some(),
            team: desired.team.is_some(),
            properties: keys(&desired.properties),
            relations: keys(&desired.relations),
        }
    }

    /// Without merge the write replaces the entity, so everything on either side counts.
    pub fn replace(desired: &Entity, current: &Entity) -> CompareSet {
        CompareSet {
            title: true,
            icon: true,
            team: true,
            properties: keys(&desired.properties)
                .union(&keys(&current.properties))
                .cloned()
                .collect(),
            relations: keys(&desired.relations)
                .union(&keys(&current.relations))
                .cloned()
                .collect(),
        }
    }

    /// Every field of one entity (creates, deletes).
    pub fn all(entity: &Entity) -> CompareSet {
        CompareSet {
            title: true,
            icon: true,
            team: true,
            properties: keys(&entity.properties),
            relations: keys(&entity.relations),
        }
    }
}

fn keys(map: &Option<Map<String, Json>>) -> BTreeSet<String> {
    map.iter().flat_map(|m| m.keys().cloned()).collect()
}

/// The compared fields of `entity` in canonical form: every field and key of `set` is present
/// (absent becomes `null`), so two normalised values are equal exactly when the entities are
/// equal under the rules of docs/contract.md.
pub fn normalize(entity: &Entity, set: &CompareSet) -> Json {
    let mut out = Map::new();
    let scalar = |v: &Option<Json>| v.as_ref().map(canonical).unwrap_or(Json::Null);
    if set.title {
        out.insert("title".into(), scalar(&entity.title));
    }
    if set.icon {
        out.insert("icon".into(), scalar(&entity.icon));
    }
    if set.team {
        out.insert("team".into(), normalize_team(entity.team.as_ref()));
    }
    let pick = |map: &Option<Map<String, Json>>, names: &BTreeSet<String>, as_set: bool| -> Json {
        let mut picked = Map::new();
        for name in names {
            let value = map
                .as_ref()
                .and_then(|m| m.get(name))
                .map(canonical)
                .unwrap_or(Json::Null);
            picked.insert(name.clone(), if as_set { sorted_set(value) } else { value });
        }
        Json::Object(picked)
    };
    out.insert(
        "properties".into(),
        pick(&entity.properties, &set.properties, false),
    );
    out.insert(
        "relations".into(),
        pick(&entity.relations, &set.relations, true),
    );
    Json::Object(out)
}

/// `team`: absent, null and `[]` are the same; a single team is a one-element set.
fn normalize_team(team: Option<&Json>) -> Json {
    match team {
        None | Some(Json::Null) => json!([]),
        Some(Json::String(s)) => json!([s]),
        Some(Json::Array(items)) => sorted_set(Json::Array(items.iter().map(canonical).collect())),
        Some(other) => canonical(other),
    }
}

/// Arrays of a set-valued field, sorted and deduplicated.
fn sorted_set(value: Json) -> Json {
    match value {
        Json::Array(mut items) => {
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            Json::Array(items)
        }
        other => other,
    }
}

/// Numbers in one form, so that `1` and `1.0` compare equal, and object keys sorted. Objects keep
/// their document order everywhere else (mappings must see it as jq does), but the catalog may
/// answer with keys in another order than tidemark wrote them: plan hashes and the plan's
/// before/after texts must not change, nor show a diff, because of that.
pub fn canonical(value: &Json) -> Json {
    match value {
        Json::Number(n) => {
            if n.is_f64()
                && let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                return json!(f as i64);
            }
            Json::Number(n.clone())
        }
        Json::Array(items) => Json::Array(items.iter().map(canonical).collect()),
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_unstable_by_key(|(k, _)| *k);
            Json::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Whether `desired` and `current` are equal under the rules of docs/contract.md, without building normalised
/// values: the common no-op case of a plan runs this once per entity, so it must not allocate.
pub fn same_fields(desired: &Entity, current: &Entity, merge: bool) -> bool {
    let scalar = |a: &Option<Json>, b: &Option<Json>| {
        json_eq(
            a.as_ref().unwrap_or(&Json::Null),
            b.as_ref().unwrap_or(&Json::Null),
        )
    };
    if (!merge || desired.title.is_some()) && !scalar(&desired.title, &current.title) {
        return false;
    }
    if (!merge || desired.icon.is_some()) && !scalar(&desired.icon, &current.icon) {
        return false;
    }
    if (!merge || desired.team.is_some())
        && normalize_team(desired.team.as_ref()) != normalize_team(current.team.as_ref())
    {
        return false;
    }
    same_map(&desired.properties, &current.properties, merge, false)
        && same_map(&desired.relations, &current.relations, merge, true)
}

/// Keys of `desired` (and with `!merge` also of `current`) compare equal, absent equal to null.
fn same_map(
    desired: &Option<Map<String, Json>>,
    current: &Option<Map<String, Json>>,
    merge: bool,
    as_set: bool,
) -> bool {
    fn get<'m>(m: &'m Option<Map<String, Json>>, k: &str) -> &'m Json {
        m.as_ref().and_then(|m| m.get(k)).unwrap_or(&Json::Null)
    }
    let eq = |a: &Json, b: &Json| if as_set { set_eq(a, b) } else { json_eq(a, b) };
    let desired_ok = desired
        .iter()
        .flatten()
        .all(|(k, v)| eq(v, get(current, k)));
    desired_ok
        && (merge
            || current
                .iter()
                .flatten()
                .all(|(k, v)| eq(get(desired, k), v)))
}

/// JSON equality with numbers compared numerically.
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Equality of set-valued fields (many-relations): same elements in any order.
fn set_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => {
            x.iter().all(|v| y.iter().any(|w| json_eq(v, w)))
                && y.iter().all(|w| x.iter().any(|v| json_eq(v, w)))
        }
        _ => json_eq(a, b),
    }
}

/// An entity back from normalised fields (for writes from a plan file).
pub fn entity_from_fields(blueprint: &str, identifier: &str, fields: &Json) -> Entity {
    let mut entity = Entity::new(blueprint, identifier);
    entity.title = fields.get("title").cloned();
    entity.icon = fields.get("icon").cloned();
    entity.team = fields.get("team").cloned();
    entity.properties = fields.get("properties").and_then(Json::as_object).cloned();
    entity.relations = fields.get("relations").and_then(Json::as_object).cloned();
    entity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(mut value: Json) -> Entity {
        value["blueprint"] = json!("b");
        value["identifier"] = json!("i");
        serde_json::from_value(value).expect("entity")
    }

    /// Both comparisons must agree: the allocation-free one and the normalised values.
    fn same_merge(desired: Json, current: Json) -> bool {
        let d = entity(desired);
        let c = entity(current);
        let set = CompareSet::merge(&d);
        let normalised = normalize(&d, &set) == normalize(&c, &set);
        assert_eq!(same_fields(&d, &c, true), normalised);
        normalised
    }

    fn same_replace(desired: Json, current: Json) -> bool {
        let d = entity(desired);
        let c = entity(current);
        let set = CompareSet::replace(&d, &c);
        let normalised = normalize(&d, &set) == normalize(&c, &set);
        assert_eq!(same_fields(&d, &c, false), normalised);
        normalised
    }

    #[test]
    fn absent_equals_null() {
        assert!(same_replace(
            json!({"title": null, "properties": {"a": null}}),
            json!({"relations": {}})
        ));
    }

    #[test]
    fn team_absent_null_and_empty_are_equal_and_compare_as_sets() {
        assert!(same_replace(json!({"team": []}), json!({"team": null})));
        assert!(same_replace(json!({}), json!({"team": []})));
        assert!(same_replace(
            json!({"team": ["b", "a"]}),
            json!({"team": ["a", "b", "a"]})
        ));
        assert!(same_replace(json!({"team": "a"}), json!({"team": ["a"]})));
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(same_replace(
            json!({"properties": {"n": 1}}),
            json!({"properties": {"n": 1.0}})
        ));
        assert!(!same_replace(
            json!({"properties": {"n": 1}}),
            json!({"properties": {"n": 1.5}})
        ));
    }

    #[test]
    fn many_relations_compare_as_sets_but_property_arrays_keep_order() {
        assert!(same_replace(
            json!({"relations": {"r": ["x", "y"]}}),
            json!({"relations": {"r": ["y", "x"]}})
        ));
        assert!(!same_replace(
            json!({"properties": {"p": [1, 2]}}),
            json!({"properties": {"p": [2, 1]}})
        ));
    }

    #[test]
    fn merge_compares_only_what_the_mapping_defines() {
        assert!(same_merge(
            json!({"properties": {"a": 1}}),
            json!({"title": "kept", "icon": "x", "properties": {"a": 1, "other": 2}, "relations": {"r": "z"}})
        ));
        assert!(!same_merge(
            json!({"title": "new", "properties": {"a": 1}}),
            json!({"title": "old", "properties": {"a": 1}})
        ));
    }

    #[test]
    fn replace_sees_keys_the_mapping_no_longer_produces() {
        assert!(!same_replace(
            json!({"properties": {"a": 1}}),
            json!({"properties": {"a": 1, "gone": 2}})
        ));
    }

    /// `{"region": .., "tags": {"team": .., "env": ..}}` with its keys in the order given, as a
    /// mapping or a catalog may produce them.
    fn ordered_properties(order: &[&str], tag_order: &[&str]) -> Json {
        let mut tags = Map::new();
        for k in tag_order {
            tags.insert((*k).to_string(), json!(format!("{k}-value")));
        }
        let mut props = Map::new();
        for k in order {
            let value = if *k == "tags" {
                Json::Object(tags.clone())
            } else {
                json!(1.0)
            };
            props.insert((*k).to_string(), value);
        }
        json!({"title": "t", "properties": props, "relations": {"r": ["y", "x"]}})
    }

    #[test]
    fn key_order_of_the_catalog_answer_is_no_change() {
        let desired = ordered_properties(&["zone", "tags", "alpha"], &["team", "env"]);
        let current = ordered_properties(&["alpha", "zone", "tags"], &["env", "team"]);
        // The two really differ in order, so the test cannot pass by accident.
        assert_ne!(desired.to_string(), current.to_string());
        assert!(same_merge(desired.clone(), current.clone()));
        assert!(same_replace(desired.clone(), current.clone()));
        let (d, c) = (entity(desired), entity(current));
        let set = CompareSet::all(&d);
        assert_eq!(
            normalize(&d, &set).to_string(),
            normalize(&c, &set).to_string(),
            "the plan shows the same text on both sides"
        );
    }

    #[test]
    fn canonical_sorts_keys_at_every_depth_and_keeps_array_order() {
        let v: Json = serde_json::from_str(r#"{"b": {"y": 1.0, "x": [{"d": 2, "c": 1}]}, "a": 3}"#)
            .expect("json");
        assert_eq!(
            canonical(&v).to_string(),
            r#"{"a":3,"b":{"x":[{"c":1,"d":2}],"y":1}}"#
        );
    }

    #[test]
    fn the_plan_basis_hash_does_not_depend_on_key_order() {
        use crate::core::model::OwnedEntity;
        let owned = |fields: Json| OwnedEntity {
            entity: entity(fields),
            account: Some("222222222222".into()),
            kind: Some("AWS::S3::Bucket".into()),
            placeholder: false,
        };
        let a = owned(ordered_properties(
            &["zone", "tags", "alpha"],
            &["team", "env"],
        ));
        let b = owned(ordered_properties(
            &["tags", "alpha", "zone"],
            &["env", "team"],
        ));
        let hashes =
            |o: &OwnedEntity| crate::core::reconcile::plan::owned_hashes(std::slice::from_ref(o));
        assert_eq!(hashes(&a), hashes(&b));
        let mut changed = b.clone();
        if let Some(props) = changed.entity.properties.as_mut() {
            props.insert("zone".into(), json!(2));
        }
        assert_ne!(hashes(&a), hashes(&changed));
    }

    /// Any JSON value, objects included at every depth.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i32>().prop_map(Json::from),
            (-1e6f64..1e6).prop_map(Json::from),
            "[a-z]{0,4}".prop_map(Json::from),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::vec(("[a-e]{1,2}", inner), 0..5)
                    .prop_map(|entries| Json::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// The same value with the keys of every object in reverse order.
    fn reversed(value: &Json) -> Json {
        match value {
            Json::Object(map) => Json::Object(
                map.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Json::Array(items) => Json::Array(items.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_text_and_comparison_ignore_key_order(value in any_json(), other in any_json()) {
            let flipped = reversed(&value);
            proptest::prop_assert_eq!(canonical(&value).to_string(), canonical(&flipped).to_string());
            proptest::prop_assert_eq!(canonical(&canonical(&value)), canonical(&value));
            let d = entity(json!({"title": value.clone(), "properties": {"p": value.clone(), "q": other.clone()}}));
            let c = entity(json!({"properties": {"q": reversed(&other), "p": flipped}, "title": reversed(&value)}));
            proptest::prop_assert!(same_fields(&d, &c, true));
            proptest::prop_assert!(same_fields(&d, &c, false));
            let set = CompareSet::replace(&d, &c);
            proptest::prop_assert_eq!(normalize(&d, &set).to_string(), normalize(&c, &set).to_string());
        }
    }

    #[test]
    fn an_explicit_null_clears_a_value_under_merge() {
        assert!(!same_merge(
            json!({"properties": {"a": null}}),
            json!({"properties": {"a": 5}})
        ));
    }
}
