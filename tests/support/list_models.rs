//! What Cloud Control's `ListResources` returns of each type's model, from the evidence table
//! `tests/fixtures/aws/list_models.json`: shared by the Cloud Control stand-in and the fixture
//! tests, as `tests/fixtures/aws/regenerate.py` reads it to write each kind's `list.json`.

use serde_json::{Map, Value as Json};

const TABLE: &str = include_str!("../fixtures/aws/list_models.json");

/// The table, by kind.
pub fn table() -> Map<String, Json> {
    let mut table: Map<String, Json> = serde_json::from_str(TABLE).expect("list_models.json");
    table.remove("_about");
    table
}

/// The properties `ListResources` returns of a resource of `kind` whose full model (what
/// `GetResource` returns) is `full`. A kind not in the table lists its whole model.
pub fn list_model(kind: &str, full: &Json) -> Json {
    let table = table();
    let Some(entry) = table.get(kind) else {
        return full.clone();
    };
    let Some(fields) = full.as_object() else {
        return full.clone();
    };
    let names = |key: &str| -> Option<Vec<String>> {
        entry.get(key).and_then(Json::as_array).map(|list| {
            list.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
    };
    let listed: Map<String, Json> = match (names("keep"), names("drop")) {
        (Some(keep), _) => fields
            .iter()
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        (None, Some(drop)) => fields
            .iter()
            .filter(|(k, _)| !drop.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        (None, None) => fields.clone(),
    };
    Json::Object(listed)
}
