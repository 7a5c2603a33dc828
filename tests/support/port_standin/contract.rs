//! What Port's API reference declares for each route tidemark's client may call, written down
//! from Port's published OpenAPI specification (`static/apispec.yaml` in port-labs/port-docs) and
//! from how Port's own clients (Ocean, port-k8s-exporter) call the same routes. Nothing here is
//! taken from tidemark's client: a request shape the specification does not allow is refused with
//! Port's 422 envelope, whatever tidemark happens to send.
//!
//! Where Port's own clients depend on something the specification is stricter about, the clients
//! win, because Port evidently accepts it: Ocean sends `title: null` for a title that mapped to
//! nothing, extra keys (`blueprint`) inside bulk entity items, and undeclared telemetry query
//! parameters. Undeclared query parameters are therefore ignored, as Port ignores Ocean's, and
//! recorded so that tests can check that tidemark sends none.

use serde_json::{Map, Value as Json};

/// Meta-properties a search may name, with the `$` Port requires. `$datasource` is not in the
/// reference but is what Ocean searches its own entities by.
pub const META_PROPERTIES: [&str; 10] = [
    "$identifier",
    "$title",
    "$icon",
    "$team",
    "$blueprint",
    "$createdAt",
    "$updatedAt",
    "$createdBy",
    "$updatedBy",
    "$datasource",
];

/// The operators of the string rule family.
const STRING_OPERATORS: [&str; 11] = [
    "=",
    "!=",
    "containsAny",
    "contains",
    "doesNotContains",
    "beginsWith",
    "doesNotBeginsWith",
    "endsWith",
    "doesNotEndsWith",
    "in",
    "notIn",
];
const NUMBER_OPERATORS: [&str; 4] = [">", ">=", "<", "<="];
const EMPTY_OPERATORS: [&str; 2] = ["isEmpty", "isNotEmpty"];
const DATE_OPERATORS: [&str; 3] = ["between", "notBetween", "="];
const PROPERTY_TYPES: [&str; 5] = ["string", "number", "boolean", "object", "array"];

/// A request the specification does not allow: Port answers 422 with this message.
pub type Refusal = String;

/// The query parameters a route declares: name and whether it is required. All are booleans
/// except `run_id`.
pub fn declared_params(route: Route) -> &'static [(&'static str, bool)] {
    match route {
        Route::Token | Route::ListBlueprints | Route::GetBlueprint | Route::PatchBlueprint => &[],
        Route::CreateBlueprint => &[("create_catalog_page", false)],
        Route::Search | Route::DatasourceEntities => &[],
        Route::BulkUpsert => &[
            ("upsert", true),
            ("merge", false),
            ("create_missing_related_entities", false),
            ("validation_only", false),
            ("run_id", false),
        ],
        Route::BulkDelete | Route::DeleteEntity => {
            &[("delete_dependents", true), ("run_id", false)]
        }
        Route::GetEntity => &[
            ("exclude_calculated_properties", false),
            ("include", false),
            ("exclude", false),
            ("attach_title_to_relation", false),
            ("attach_identifier_to_title_mirror_properties", false),
            ("allow_partial_results", false),
        ],
    }
}

/// The routes the stand-in serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Token,
    ListBlueprints,
    GetBlueprint,
    CreateBlueprint,
    PatchBlueprint,
    Search,
    DatasourceEntities,
    BulkUpsert,
    BulkDelete,
    DeleteEntity,
    GetEntity,
}

/// Checks the query string of `route`: required parameters present, booleans spelled `true` or
/// `false`. Returns the names of parameters the route does not declare (ignored, like Port).
pub fn check_params(route: Route, pairs: &[(String, String)]) -> Result<Vec<String>, Refusal> {
    let declared = declared_params(route);
    let mut undeclared = Vec::new();
    for (name, value) in pairs {
        match declared.iter().find(|(d, _)| d == name) {
            None => undeclared.push(name.clone()),
            Some(("run_id" | "include" | "exclude", _)) => {}
            Some(_) if value == "true" || value == "false" => {}
            Some(_) => {
                return Err(format!("querystring/{name} must be boolean, got {value:?}"));
            }
        }
    }
    for (name, required) in declared {
        if *required && !pairs.iter().any(|(n, _)| n == name) {
            return Err(format!("querystring must have required property '{name}'"));
        }
    }
    Ok(undeclared)
}

/// `body` is an object with only `allowed` keys and every key of `required`.
fn closed_object<'a>(
    body: &'a Json,
    at: &str,
    allowed: &[&str],
    required: &[&str],
) -> Result<&'a Map<String, Json>, Refusal> {
    let obj = body
        .as_object()
        .ok_or_else(|| format!("{at} must be object"))?;
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("{at} must NOT have additional property '{extra}'"));
    }
    if let Some(missing) = required.iter().find(|k| !obj.contains_key(**k)) {
        return Err(format!("{at} must have required property '{missing}'"));
    }
    Ok(obj)
}

fn string_array<'a>(value: &'a Json, at: &str) -> Result<Vec<&'a str>, Refusal> {
    value
        .as_array()
        .ok_or_else(|| format!("{at} must be array"))?
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("{at} items must be string"))
        })
        .collect()
}

/// Port's entity identifier: letters of any script, digits and `@ _ . + : \ / = -`, at most 1000
/// characters, and not `.` or `..`.
pub fn is_entity_identifier(id: &str) -> bool {
    id != "."
        && id != ".."
        && !id.is_empty()
        && id.chars().count() <= 1000
        && id
            .chars()
            .all(|c| c.is_alphabetic() || c.is_ascii_digit() || "@_.+:\\/=-".contains(c))
}

/// A blueprint identifier: the entity rule without `=`, at most 100 characters.
pub fn is_blueprint_identifier(id: &str) -> bool {
    is_entity_identifier(id) && !id.contains('=') && id.chars().count() <= 100
}

/// Property, relation and computed-property identifiers: ASCII letters, digits, `@ _ = \ -`.
pub fn is_property_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_=\\-".contains(c))
}

/// `POST /v1/auth/access_token`: exactly `clientId` and `clientSecret`, both strings.
pub fn check_token_body(body: &Json) -> Result<(), Refusal> {
    let obj = closed_object(
        body,
        "body",
        &["clientId", "clientSecret"],
        &["clientId", "clientSecret"],
    )?;
    for key in ["clientId", "clientSecret"] {
        if !obj[key].is_string() {
            return Err(format!("body/{key} must be string"));
        }
    }
    Ok(())
}

/// `POST /v1/blueprints`: identifier, title and schema required; the rest as on PATCH.
pub fn check_blueprint_create(body: &Json) -> Result<(), Refusal> {
    let obj = body.as_object().ok_or("body must be object")?;
    for key in ["identifier", "title", "schema"] {
        if !obj.contains_key(key) {
            return Err(format!("body must have required property '{key}'"));
        }
    }
    let id = obj["identifier"]
        .as_str()
        .ok_or("body/identifier must be string")?;
    if !is_blueprint_identifier(id) {
        return Err(format!(
            "body/identifier {id:?} must match the blueprint identifier pattern"
        ));
    }
    check_blueprint_fields(obj, true)
}

/// `PATCH /v1/blueprints/{id}`: no key is required, but what is sent must be well formed.
pub fn check_blueprint_patch(body: &Json) -> Result<(), Refusal> {
    let obj = body.as_object().ok_or("body must be object")?;
    check_blueprint_fields(obj, false)
}

fn check_blueprint_fields(obj: &Map<String, Json>, is_create: bool) -> Result<(), Refusal> {
    if let Some(title) = obj.get("title") {
        let len = title.as_str().map(|t| t.chars().count());
        if !matches!(len, Some(1..=100)) {
            return Err("body/title must be a string of 1 to 100 characters".into());
        }
    }
    if let Some(schema) = obj.get("schema") {
        let schema = closed_object(
            schema,
            "body/schema",
            &["properties", "required"],
            &["properties"],
        )?;
        let props = schema["properties"]
            .as_object()
            .ok_or("body/schema/properties must be object")?;
        for (name, def) in props {
            if !is_property_identifier(name) {
                return Err(format!(
                    "body/schema/properties: {name:?} is not a valid property identifier"
                ));
            }
            let def = def
                .as_object()
                .ok_or_else(|| format!("body/schema/properties/{name} must be object"))?;
            match def.get("type") {
                None if is_create => {
                    return Err(format!(
                        "body/schema/properties/{name} must have required property 'type'"
                    ));
                }
                None => {}
                Some(t) if t.as_str().is_some_and(|t| PROPERTY_TYPES.contains(&t)) => {}
                Some(t) => {
                    return Err(format!(
                        "body/schema/properties/{name}/type must be one of {PROPERTY_TYPES:?}, got {t}"
                    ));
                }
            }
        }
        if let Some(required) = schema.get("required") {
            string_array(required, "body/schema/required")?;
        }
    }
    if let Some(relations) = obj.get("relations") {
        let relations = relations
            .as_object()
            .ok_or("body/relations must be object")?;
        for (name, def) in relations {
            if !is_property_identifier(name) {
                return Err(format!(
                    "body/relations: {name:?} is not a valid relation identifier"
                ));
            }
            let at = format!("body/relations/{name}");
            let def = closed_object(
                def,
                &at,
                &["target", "required", "many", "title", "description", "type"],
                &["target", "required", "many"],
            )?;
            if !def["target"].is_string()
                || !def["required"].is_boolean()
                || !def["many"].is_boolean()
            {
                return Err(format!(
                    "{at}: target must be string, required and many boolean"
                ));
            }
        }
    }
    for (key, allowed, required) in [
        ("mirrorProperties", &["path", "title"][..], &["path"][..]),
        (
            "calculationProperties",
            &[
                "calculation",
                "type",
                "title",
                "description",
                "icon",
                "format",
                "spec",
                "specAuthentication",
                "colorized",
                "colors",
                "items",
            ][..],
            &["calculation", "type"][..],
        ),
        (
            "aggregationProperties",
            &[
                "title",
                "target",
                "calculationSpec",
                "description",
                "icon",
                "type",
                "query",
                "pathFilter",
            ][..],
            &["title", "target", "calculationSpec"][..],
        ),
    ] {
        if let Some(map) = obj.get(key) {
            let map = map
                .as_object()
                .ok_or_else(|| format!("body/{key} must be object"))?;
            for (name, def) in map {
                if !is_property_identifier(name) {
                    return Err(format!("body/{key}: {name:?} is not a valid identifier"));
                }
                closed_object(def, &format!("body/{key}/{name}"), allowed, required)?;
            }
        }
    }
    Ok(())
}

/// What a blueprint lets a search name: its own properties (computed ones included) and its
/// relations.
pub struct BlueprintNames {
    pub properties: Vec<String>,
    pub relations: Vec<String>,
}

impl BlueprintNames {
    pub fn of(blueprint: &Json) -> BlueprintNames {
        let keys = |v: Option<&Json>| -> Vec<String> {
            v.and_then(Json::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut properties = keys(blueprint.pointer("/schema/properties"));
        for computed in [
            "mirrorProperties",
            "calculationProperties",
            "aggregationProperties",
        ] {
            properties.extend(keys(blueprint.get(computed)));
        }
        BlueprintNames {
            properties,
            relations: keys(blueprint.get("relations")),
        }
    }

    fn has_property(&self, name: &str) -> bool {
        META_PROPERTIES.contains(&name) || self.properties.iter().any(|p| p == name)
    }

    fn has_relation(&self, name: &str) -> bool {
        self.relations.iter().any(|r| r == name)
    }
}

/// A blueprint search request, checked.
pub struct SearchRequest {
    pub query: Option<Json>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub limit: usize,
    pub from: Option<String>,
}

/// `POST /v1/blueprints/{bp}/entities/search`: only `query`, `include`, `exclude`, `limit`
/// (a number from 1 to 1000, default 200) and `from`. `include`/`exclude` name the blueprint's
/// properties and relations by identifier, and meta-properties with their `$`.
pub fn check_search_body(body: &Json, names: &BlueprintNames) -> Result<SearchRequest, Refusal> {
    let body = if body.is_null() {
        &Json::Object(Map::new())
    } else {
        body
    };
    let obj = closed_object(
        body,
        "body",
        &["query", "include", "exclude", "limit", "from"],
        &[],
    )?;
    let limit = match obj.get("limit") {
        None => 200.0,
        Some(l) => l.as_f64().ok_or("body/limit must be number")?,
    };
    if !(1.0..=1000.0).contains(&limit) {
        return Err(format!(
            "body/limit must be between 1 and 1000, got {limit}"
        ));
    }
    let from = match obj.get("from") {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return Err("body/from must be string".into()),
    };
    let mut fields = [None, None];
    for (slot, key) in fields.iter_mut().zip(["include", "exclude"]) {
        if let Some(list) = obj.get(key) {
            let at = format!("body/{key}");
            let entries = string_array(list, &at)?;
            for entry in &entries {
                if !names.has_property(entry) && !names.has_relation(entry) {
                    return Err(format!(
                        "{at}: {entry:?} is neither a property or relation of this blueprint nor a meta-property ($identifier, $title, …)"
                    ));
                }
            }
            *slot = Some(entries.into_iter().map(str::to_string).collect());
        }
    }
    let [include, exclude] = fields;
    if let Some(query) = obj.get("query") {
        check_query(query, "body/query", names)?;
    }
    Ok(SearchRequest {
        query: obj.get("query").cloned(),
        include,
        exclude,
        limit: limit as usize,
        from,
    })
}

/// The query grammar of the blueprint search route: a combinator and its rules, each rule one of
/// the documented variants with only its own keys.
fn check_query(query: &Json, at: &str, names: &BlueprintNames) -> Result<(), Refusal> {
    let obj = closed_object(
        query,
        at,
        &["combinator", "rules"],
        &["combinator", "rules"],
    )?;
    if !matches!(obj["combinator"].as_str(), Some("and" | "or")) {
        return Err(format!(
            "{at}/combinator must be equal to one of the allowed values: and, or"
        ));
    }
    let rules = obj["rules"]
        .as_array()
        .ok_or_else(|| format!("{at}/rules must be array"))?;
    for (i, rule) in rules.iter().enumerate() {
        check_rule(rule, &format!("{at}/rules/{i}"), names)?;
    }
    Ok(())
}

fn check_rule(rule: &Json, at: &str, names: &BlueprintNames) -> Result<(), Refusal> {
    let obj = rule
        .as_object()
        .ok_or_else(|| format!("{at} must be object"))?;
    if obj.contains_key("combinator") {
        return check_query(rule, at, names);
    }
    let operator = obj
        .get("operator")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("{at} must have required property 'operator'"))?;
    if obj.contains_key("relation") {
        return check_relation_rule(obj, at, operator, names);
    }
    if operator == "relatedTo" {
        let obj = closed_object(
            rule,
            at,
            &["operator", "blueprint", "value", "direction", "required"],
            &["operator", "blueprint", "value"],
        )?;
        if let Some(d) = obj.get("direction")
            && !matches!(d.as_str(), Some("upstream" | "downstream"))
        {
            return Err(format!("{at}/direction must be upstream or downstream"));
        }
        return Ok(());
    }
    let property = match obj.get("property") {
        Some(Json::String(p)) => p.as_str(),
        Some(_) => return Err(format!("{at}/property must be string")),
        None => {
            return Err(format!(
                "{at} must match a rule schema: a property rule, a relation rule, a relatedTo rule or a combinator"
            ));
        }
    };
    if !names.has_property(property) {
        return Err(format!(
            "{at}/property: {property:?} is not a property of this blueprint or a meta-property (a relation is named with \"relation\")"
        ));
    }
    if EMPTY_OPERATORS.contains(&operator) {
        closed_object(
            rule,
            at,
            &["operator", "property"],
            &["operator", "property"],
        )?;
        return Ok(());
    }
    if matches!(operator, "isExpired" | "isNotExpired") {
        closed_object(
            rule,
            at,
            &["operator", "property"],
            &["operator", "property"],
        )?;
        return Ok(());
    }
    let obj = closed_object(
        rule,
        at,
        &["property", "operator", "value"],
        &["property", "operator", "value"],
    )?;
    let value = &obj["value"];
    if DATE_OPERATORS.contains(&operator) && value.is_object() {
        return Ok(());
    }
    if NUMBER_OPERATORS.contains(&operator) {
        if value.is_number() || value.is_string() {
            return Ok(());
        }
        return Err(format!("{at}/value must be number or date-time"));
    }
    if STRING_OPERATORS.contains(&operator) {
        return check_string_value(value, at);
    }
    Err(format!(
        "{at}/operator {operator:?} is not an operator of any property rule"
    ))
}

/// The relation rule (only in the blueprint search route): a named relation of this blueprint,
/// compared by its targets' `$identifier` (default) or `$title`.
fn check_relation_rule(
    obj: &Map<String, Json>,
    at: &str,
    operator: &str,
    names: &BlueprintNames,
) -> Result<(), Refusal> {
    let relation = obj["relation"]
        .as_str()
        .ok_or_else(|| format!("{at}/relation must be string"))?;
    if !names.has_relation(relation) {
        return Err(format!(
            "{at}/relation: {relation:?} is not a relation of this blueprint"
        ));
    }
    if let Some(t) = obj.get("targetProperty")
        && !matches!(t.as_str(), Some("$identifier" | "$title"))
    {
        return Err(format!(
            "{at}/targetProperty must be equal to one of the allowed values: $title, $identifier"
        ));
    }
    let rule = Json::Object(obj.clone());
    if EMPTY_OPERATORS.contains(&operator) {
        closed_object(
            &rule,
            at,
            &["relation", "operator", "targetProperty"],
            &["relation", "operator"],
        )?;
        return Ok(());
    }
    if !STRING_OPERATORS.contains(&operator) {
        return Err(format!(
            "{at}/operator {operator:?} is not an operator of a relation rule"
        ));
    }
    closed_object(
        &rule,
        at,
        &["relation", "operator", "value", "targetProperty"],
        &["relation", "operator", "value"],
    )?;
    check_string_value(&obj["value"], at)
}

/// A string rule's value in this route: null, a string, number or boolean, or strings only.
fn check_string_value(value: &Json, at: &str) -> Result<(), Refusal> {
    match value {
        Json::Array(items) if items.iter().all(Json::is_string) => Ok(()),
        Json::Array(_) => Err(format!("{at}/value items must be string")),
        Json::Object(_) => Err(format!(
            "{at}/value must be a string, number, boolean, null or list of strings"
        )),
        _ => Ok(()),
    }
}

/// `POST /v1/blueprints/{bp}/entities/bulk`: only `entities`, 1 to 20 of them. Items are open
/// objects, but the keys the reference declares must have their declared types.
pub fn check_bulk_upsert_body(body: &Json, max: usize) -> Result<&Vec<Json>, Refusal> {
    let obj = closed_object(body, "body", &["entities"], &["entities"])?;
    let items = obj["entities"]
        .as_array()
        .ok_or("body/entities must be array")?;
    if items.is_empty() {
        return Err("body/entities must NOT have fewer than 1 items".into());
    }
    if items.len() > max {
        return Err(format!("body/entities must NOT have more than {max} items"));
    }
    for (i, item) in items.iter().enumerate() {
        check_entity_item(item, &format!("body/entities/{i}"))?;
    }
    Ok(items)
}

fn check_entity_item(item: &Json, at: &str) -> Result<(), Refusal> {
    let obj = item
        .as_object()
        .ok_or_else(|| format!("{at} must be object"))?;
    match obj.get("identifier") {
        None => {}
        Some(Json::String(id)) if is_entity_identifier(id) => {}
        Some(Json::String(id)) => {
            return Err(format!(
                "{at}/identifier {id:?} must match the entity identifier pattern"
            ));
        }
        Some(Json::Object(_)) => {
            return Err(format!(
                "{at}/identifier: search identifiers are not supported by this stand-in"
            ));
        }
        Some(_) => return Err(format!("{at}/identifier must be string")),
    }
    for key in ["title", "icon"] {
        if let Some(v) = obj.get(key)
            && !(v.is_string() || v.is_null())
        {
            return Err(format!("{at}/{key} must be string"));
        }
    }
    if let Some(team) = obj.get("team") {
        let ok = match team {
            Json::Null | Json::String(_) => true,
            Json::Array(items) => items.iter().all(Json::is_string),
            _ => false,
        };
        if !ok {
            return Err(format!("{at}/team must be string or array of strings"));
        }
    }
    if let Some(p) = obj.get("properties")
        && !p.is_object()
    {
        return Err(format!("{at}/properties must be object"));
    }
    if let Some(rels) = obj.get("relations") {
        let rels = rels
            .as_object()
            .ok_or_else(|| format!("{at}/relations must be object"))?;
        for (name, value) in rels {
            let ok = match value {
                Json::Null => true,
                Json::String(id) => is_entity_identifier(id),
                Json::Array(ids) => ids
                    .iter()
                    .all(|id| id.as_str().is_some_and(is_entity_identifier)),
                Json::Object(_) => false,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "{at}/relations/{name} must be an identifier, a list of identifiers or null"
                ));
            }
        }
    }
    Ok(())
}

/// `POST /v1/blueprints/{bp}/bulk/entities/delete`: only `entities`, 1 to 100 strings.
pub fn check_bulk_delete_body(body: &Json, max: usize) -> Result<Vec<String>, Refusal> {
    let obj = closed_object(body, "body", &["entities"], &["entities"])?;
    let ids = string_array(&obj["entities"], "body/entities")?;
    if ids.is_empty() {
        return Err("body/entities must NOT have fewer than 1 items".into());
    }
    if ids.len() > max {
        return Err(format!("body/entities must NOT have more than {max} items"));
    }
    Ok(ids.into_iter().map(str::to_string).collect())
}

/// The ownership listing Ocean and port-k8s-exporter use (`datasource-entities`; not in the
/// reference): a datasource prefix and suffix, a page size, a cursor and a time bound.
pub fn check_datasource_body(
    body: &Json,
) -> Result<(String, String, usize, Option<String>), Refusal> {
    let obj = closed_object(
        body,
        "body",
        &[
            "datasource_prefix",
            "datasource_suffix",
            "limit",
            "from",
            "before",
        ],
        &["datasource_prefix", "datasource_suffix"],
    )?;
    let text = |key: &str| -> Result<String, Refusal> {
        obj[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("body/{key} must be string"))
    };
    let limit = match obj.get("limit") {
        None => 5000,
        Some(l) => l.as_u64().ok_or("body/limit must be integer")? as usize,
    };
    let from = match obj.get("from") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return Err("body/from must be string".into()),
    };
    Ok((
        text("datasource_prefix")?,
        text("datasource_suffix")?,
        limit,
        from,
    ))
}
