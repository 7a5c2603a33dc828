//! Reading Port: blueprints, the entities this integration owns (attributed per account), and
//! entities of other owners at or pointing to our keys.

use crate::core::shard::Shard;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use super::AGENT_PREFIX;
use super::client::{Http, PortError, Traffic, encode_segment};
use crate::adapters::{PREFLIGHT_IDENTIFIER, ReadCheck, ReadOutcome};
use crate::core::model::{
    Blueprint, Entity, EntityKey, ForeignEntity, ForeignReference, OwnedEntity,
};

/// Page size of the per-blueprint search; Port allows 1 to 1000.
const SEARCH_PAGE: usize = 1000;
/// Page size of the ownership listing; Ocean uses 5000 on the same route.
const OWNERSHIP_PAGE: usize = 5000;
/// Identifiers per `$identifier in [...]` search; Ocean queries 50, the route's body allows more,
/// and 100 halves the requests of a large first sync.
const IDENTIFIER_BATCH: usize = 100;
/// Pages of one paginated read before tidemark gives up: 10 million entities of one blueprint in
/// a search. A bound on a Port that hands out fresh cursors forever; cursors that come round
/// again are caught at once.
const MAX_PAGES: usize = 10_000;
/// The meta-properties tidemark compares, as the blueprint search's `include` names them (with
/// the `$` Port requires); the blueprint's own properties and relations are added by name.
const COMPARED_META: [&str; 4] = ["$identifier", "$title", "$icon", "$team"];
/// Where a blueprint keeps the properties Port computes; they are never written by tidemark and
/// never compared.
const COMPUTED_PROPERTIES: [&str; 3] = [
    "mirrorProperties",
    "calculationProperties",
    "aggregationProperties",
];
/// Where Port might put the writer's User-Agent in an answer; none of them is documented.
const DATASOURCE_FIELDS: [&str; 3] = ["$datasource", "datasource", "dataSource"];

pub(super) async fn list_blueprints(http: &Http) -> Result<Vec<Blueprint>, PortError> {
    let reply = http
        .send(Method::GET, "/blueprints", None, None, Traffic::Read)
        .await?;
    if !reply.is_success() {
        return Err(refused("GET", "/blueprints", &reply));
    }
    let list = reply
        .body
        .get("blueprints")
        .and_then(Json::as_array)
        .ok_or_else(|| unexpected("GET /blueprints", "the answer has no blueprints list"))?;
    list.iter()
        .map(|bp| match bp.get("identifier").and_then(Json::as_str) {
            Some(_) => Ok(Blueprint(bp.clone())),
            None => Err(unexpected(
                "GET /blueprints",
                "a blueprint in the answer has no identifier",
            )),
        })
        .collect()
}

/// At most this many gone accounts are probed per read: a bound on extra requests if identifiers
/// happen to mention many 12-digit numbers.
const MAX_GONE_ACCOUNT_PROBES: usize = 100;

/// Twelve-digit AWS account ids mentioned by `entities` that are not among `known` and that
/// `shard` owns.
fn gone_account_candidates<'a>(
    entities: impl Iterator<Item = &'a Entity>,
    known: &[String],
    shard: Option<&Shard>,
) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let mut scan = |text: &str| {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == 12 {
                    out.insert(text[start..i].to_string());
                }
            } else {
                i += 1;
            }
        }
    };
    for entity in entities {
        scan(&entity.identifier);
        for (_, target) in entity.relation_targets() {
            scan(target);
        }
    }
    out.into_iter()
        .filter(|a| !known.contains(a) && crate::core::shard::owns(shard, a))
        .take(MAX_GONE_ACCOUNT_PROBES)
        .collect()
}

/// The two `$datasource` rules that select everything `integration` owns, whatever the version.
fn owned_rules(integration: &str) -> Vec<Json> {
    vec![
        json!({"property": "$datasource", "operator": "contains", "value": AGENT_PREFIX}),
        json!({"property": "$datasource", "operator": "contains", "value": format!("/{integration}/")}),
    ]
}

pub(super) async fn owned(
    http: &Arc<Http>,
    integration: &str,
    accounts: &[String],
    shard: Option<&Shard>,
) -> Result<Vec<OwnedEntity>, PortError> {
    let blueprints = list_blueprints(http).await?;

    let listings = accounts.iter().map(|account| {
        let http = Arc::clone(http);
        let suffix = format!("/{integration}/{account}");
        let account = account.clone();
        async move {
            let keys = list_datasource(&http, AGENT_PREFIX, &suffix, Paging::All).await?;
            Ok((account, keys))
        }
    });
    let searches = blueprints.iter().map(|bp| {
        let http = Arc::clone(http);
        let shape = SearchShape::of(bp);
        let query = json!({"combinator": "and", "rules": owned_rules(integration)});
        async move { search(&http, &shape, query, Paging::All).await }
    });
    let (listings, searches) = tokio::join!(run_all(listings), run_all(searches));

    let mut account_of: HashMap<EntityKey, String> = HashMap::new();
    for (account, keys) in listings? {
        for key in keys {
            account_of.entry(key).or_insert_with(|| account.clone());
        }
    }
    let found: Vec<Found> = searches?.into_iter().flatten().flatten().collect();

    // Entities of accounts that discovery no longer returns are claimed by no listing above. Port
    // does not return `$datasource` in searches, so their account is proven the same way: one
    // ownership listing per candidate account id, the candidates being the account ids that the
    // unclaimed entities' identifiers and relations mention (ARNs and `account` relations carry
    // them). Without this, a gone account's entities could only be deleted as "unknown".
    // A shard probes only the ids it owns: the others' entities are not its to prove gone, and
    // would otherwise use up the probes on every read.
    let candidates = gone_account_candidates(
        found
            .iter()
            .filter(|f| !account_of.contains_key(&f.entity.key()))
            .map(|f| &f.entity),
        accounts,
        shard,
    );
    let listings = candidates.into_iter().map(|account| {
        let http = Arc::clone(http);
        let suffix = format!("/{integration}/{account}");
        async move {
            let keys = list_datasource(&http, AGENT_PREFIX, &suffix, Paging::All).await?;
            Ok((account, keys))
        }
    });
    for (account, keys) in run_all(listings).await? {
        for key in keys {
            account_of.entry(key).or_insert_with(|| account.clone());
        }
    }

    let mut owned = Vec::new();
    {
        for entity in found {
            let account = account_of.get(&entity.entity.key()).cloned();
            owned.push(OwnedEntity {
                placeholder: is_placeholder(&entity.entity),
                entity: entity.entity,
                account,
                kind: None,
            });
        }
    }
    owned.sort_by_key(|o| o.entity.key());
    owned.dedup_by(|a, b| a.entity.key() == b.entity.key());
    Ok(owned)
}

pub(super) async fn foreign(
    http: &Arc<Http>,
    integration: &str,
    adopt_prefixes: &[String],
    keys: &[EntityKey],
) -> Result<Vec<ForeignEntity>, PortError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // A blueprint Port does not have holds no entity of anyone's.
    let shapes: HashMap<String, SearchShape> = list_blueprints(http)
        .await?
        .iter()
        .map(|bp| (bp.identifier().to_string(), SearchShape::of(bp)))
        .collect();
    let tasks = identifier_batches(keys)
        .into_iter()
        .filter_map(|(blueprint, ids)| {
            let shape = shapes.get(&blueprint)?.clone();
            let http = Arc::clone(http);
            let integration = integration.to_string();
            let prefixes = adopt_prefixes.to_vec();
            Some(async move { foreign_batch(&http, &integration, &prefixes, &shape, ids).await })
        });
    let mut found: Vec<ForeignEntity> = run_all(tasks).await?.into_iter().flatten().collect();
    found.sort_by_key(|f| f.entity.key());
    Ok(found)
}

/// One blueprint's batch of identifiers: which exist, which of those are not ours, and who the
/// others belong to as far as Port lets us know.
async fn foreign_batch(
    http: &Http,
    integration: &str,
    adopt_prefixes: &[String],
    shape: &SearchShape,
    ids: Vec<String>,
) -> Result<Vec<ForeignEntity>, PortError> {
    let Some(existing) =
        search(http, shape, identifier_query(&ids, Vec::new()), Paging::All).await?
    else {
        return Ok(Vec::new());
    };
    let found_ids: Vec<String> = existing
        .iter()
        .map(|e| e.entity.identifier.clone())
        .collect();
    if found_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ours: BTreeSet<String> = identifiers(
        http,
        shape,
        identifier_query(&found_ids, owned_rules(integration)),
    )
    .await?;
    let mut foreign: Vec<ForeignEntity> = existing
        .into_iter()
        .filter(|e| !ours.contains(&e.entity.identifier))
        .map(|e| ForeignEntity {
            owner: e.datasource.unwrap_or_default(),
            entity: e.entity,
        })
        .collect();
    for prefix in adopt_prefixes {
        let unknown: Vec<String> = foreign
            .iter()
            .filter(|f| f.owner.is_empty())
            .map(|f| f.entity.identifier.clone())
            .collect();
        if unknown.is_empty() {
            break;
        }
        let rule = json!({"property": "$datasource", "operator": "contains", "value": prefix});
        let matched: BTreeSet<String> =
            identifiers(http, shape, identifier_query(&unknown, vec![rule])).await?;
        for f in foreign.iter_mut() {
            if f.owner.is_empty() && matched.contains(&f.entity.identifier) {
                // Port did not say the full datasource; the prefix it matched is what the core
                // compares against `integration.adopt`.
                f.owner = prefix.clone();
            }
        }
    }
    Ok(foreign)
}

pub(super) async fn foreign_references(
    http: &Arc<Http>,
    integration: &str,
    keys: &[EntityKey],
) -> Result<Vec<ForeignReference>, PortError> {
    let mut targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in keys {
        targets
            .entry(key.blueprint.clone())
            .or_default()
            .insert(key.identifier.clone());
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let blueprints = list_blueprints(http).await?;
    let mut tasks = Vec::new();
    for bp in &blueprints {
        for relation in bp.relations() {
            let Some(ids) = targets.get(&relation.target) else {
                continue;
            };
            let ids: Vec<String> = ids.iter().cloned().collect();
            for chunk in ids.chunks(IDENTIFIER_BATCH) {
                let http = Arc::clone(http);
                let integration = integration.to_string();
                let referrer = SearchShape::of(bp);
                let target_bp = relation.target.clone();
                let name = relation.name.clone();
                let chunk = chunk.to_vec();
                tasks.push(async move {
                    references_batch(&http, &integration, &referrer, &name, &target_bp, chunk).await
                });
            }
        }
    }
    let mut refs: Vec<ForeignReference> = run_all(tasks).await?.into_iter().flatten().collect();
    refs.sort();
    refs.dedup();
    Ok(refs)
}

/// Entities of the `referrer` blueprint whose relation `relation` points at any of `ids`, minus
/// ours.
async fn references_batch(
    http: &Http,
    integration: &str,
    referrer: &SearchShape,
    relation: &str,
    target_bp: &str,
    ids: Vec<String>,
) -> Result<Vec<ForeignReference>, PortError> {
    let query = json!({"combinator": "and", "rules": [relation_rule(relation, &ids)]});
    let Some(referrers) = search(http, referrer, query, Paging::All).await? else {
        return Ok(Vec::new());
    };
    if referrers.is_empty() {
        return Ok(Vec::new());
    }
    let referrer_ids: Vec<String> = referrers
        .iter()
        .map(|e| e.entity.identifier.clone())
        .collect();
    let ours: BTreeSet<String> = identifiers(
        http,
        referrer,
        identifier_query(&referrer_ids, owned_rules(integration)),
    )
    .await?;
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut refs = Vec::new();
    for found in referrers {
        if ours.contains(&found.entity.identifier) {
            continue;
        }
        for (name, target) in found.entity.relation_targets() {
            if name == relation && wanted.contains(target) {
                refs.push(ForeignReference {
                    target: EntityKey::new(target_bp, target),
                    referrer: found.entity.key(),
                    owner: found.datasource.clone().unwrap_or_default(),
                });
            }
        }
    }
    Ok(refs)
}

/// Entities whose relation `relation` points at any of `ids`. Port's search names a relation with
/// `relation`, never with `property` (which names only properties and meta-properties).
fn relation_rule(relation: &str, ids: &[String]) -> Json {
    json!({"relation": relation, "operator": "in", "value": ids})
}

fn identifier_query(ids: &[String], mut rules: Vec<Json>) -> Json {
    rules.insert(
        0,
        json!({"property": "$identifier", "operator": "in", "value": ids}),
    );
    json!({"combinator": "and", "rules": rules})
}

/// The identifiers of `blueprint`'s entities that match `query`, every page: a search relation
/// resolved by Port's own search. A blueprint Port does not have matches nothing.
pub(super) async fn search_identifiers(
    http: &Http,
    blueprint: &str,
    query: &Json,
) -> Result<Vec<String>, PortError> {
    let shape = SearchShape {
        blueprint: blueprint.to_string(),
        include: vec!["$identifier".to_string()],
        computed: BTreeSet::new(),
    };
    Ok(identifiers(http, &shape, query.clone())
        .await?
        .into_iter()
        .collect())
}

/// The identifiers of the entities in `shape`'s blueprint that match `query`; none when Port has
/// no such blueprint.
async fn identifiers(
    http: &Http,
    shape: &SearchShape,
    query: Json,
) -> Result<BTreeSet<String>, PortError> {
    Ok(search(http, shape, query, Paging::All)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.entity.identifier)
        .collect())
}

/// Every read the reconciler sends for `blueprints`, one probe page each (`validate --catalog`).
/// Listing the blueprints also authenticates; when that fails nothing else can be checked.
pub(super) async fn preflight(
    http: &Http,
    integration: &str,
    adopt_prefixes: &[String],
    blueprints: &[String],
) -> Result<Vec<ReadCheck>, PortError> {
    let present = list_blueprints(http).await?;
    let outcome = |read: Result<(), PortError>| match read {
        Ok(()) => ReadOutcome::Accepted,
        Err(e) => ReadOutcome::Refused(e.to_string()),
    };
    let mut checks = vec![ReadCheck::new(
        None,
        "the token and the blueprint list (GET /v1/blueprints)",
        ReadOutcome::Accepted,
    )];
    let suffix = format!("/{integration}/{PREFLIGHT_ACCOUNT}");
    checks.push(ReadCheck::new(
        None,
        "the ownership listing (POST /v1/blueprints/entities/datasource-entities)",
        outcome(
            list_datasource(http, AGENT_PREFIX, &suffix, Paging::Probe)
                .await
                .map(drop),
        ),
    ));
    let probe = vec![PREFLIGHT_IDENTIFIER.to_string()];
    for blueprint in blueprints {
        let Some(bp) = present.iter().find(|b| b.identifier() == blueprint) else {
            checks.push(ReadCheck::new(
                Some(blueprint),
                "the blueprint",
                ReadOutcome::Missing,
            ));
            continue;
        };
        let shape = SearchShape::of(bp);
        let mut reads: Vec<(String, Json)> = vec![
            (
                "search of owned entities".into(),
                json!({"combinator": "and", "rules": owned_rules(integration)}),
            ),
            (
                "search by identifier".into(),
                identifier_query(&probe, Vec::new()),
            ),
            (
                "search of owned entities by identifier".into(),
                identifier_query(&probe, owned_rules(integration)),
            ),
        ];
        for prefix in adopt_prefixes {
            let rule = json!({"property": "$datasource", "operator": "contains", "value": prefix});
            reads.push((
                format!("search of entities written by {prefix}"),
                identifier_query(&probe, vec![rule]),
            ));
        }
        checks.push(ReadCheck::new(
            Some(blueprint),
            "the blueprint (GET /v1/blueprints/{id})",
            outcome(blueprint_read(http, blueprint).await),
        ));
        for (read, query) in reads {
            let result = search(http, &shape, query, Paging::Probe).await.map(drop);
            checks.push(ReadCheck::new(
                Some(blueprint),
                format!("{read} (POST /v1/blueprints/{{id}}/entities/search)"),
                outcome(result),
            ));
        }
        for referrer in &present {
            for relation in referrer
                .relations()
                .iter()
                .filter(|r| r.target == *blueprint)
            {
                let query =
                    json!({"combinator": "and", "rules": [relation_rule(&relation.name, &probe)]});
                let result = search(http, &SearchShape::of(referrer), query, Paging::Probe)
                    .await
                    .map(drop);
                checks.push(ReadCheck::new(
                    Some(blueprint),
                    format!(
                        "search of {}s that relate to it through {} (POST /v1/blueprints/{{id}}/entities/search)",
                        referrer.identifier(),
                        relation.name
                    ),
                    outcome(result),
                ));
            }
        }
    }
    Ok(checks)
}

/// `GET /v1/blueprints/{id}`, as the blueprint bootstrap reads before it creates or adds.
async fn blueprint_read(http: &Http, identifier: &str) -> Result<(), PortError> {
    let path = format!("/blueprints/{}", encode_segment(identifier));
    let reply = http
        .send(Method::GET, &path, None, None, Traffic::Read)
        .await?;
    if reply.is_success() {
        Ok(())
    } else {
        Err(refused("GET", &path, &reply))
    }
}

/// The account id the preflight's ownership listing names: a valid one that owns nothing.
const PREFLIGHT_ACCOUNT: &str = "000000000000";

/// Keys grouped by blueprint and cut into search-sized batches.
fn identifier_batches(keys: &[EntityKey]) -> Vec<(String, Vec<String>)> {
    let mut by_blueprint: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for key in keys {
        by_blueprint
            .entry(&key.blueprint)
            .or_default()
            .insert(&key.identifier);
    }
    let mut batches = Vec::new();
    for (blueprint, ids) in by_blueprint {
        let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
        for chunk in ids.chunks(IDENTIFIER_BATCH) {
            batches.push((blueprint.to_string(), chunk.to_vec()));
        }
    }
    batches
}

/// An entity from a search answer, with its `$datasource` when Port included one.
struct Found {
    entity: Entity,
    datasource: Option<String>,
}

/// How one blueprint is searched: the fields asked for (the compared meta-properties and the
/// blueprint's own properties and relations, by identifier, as Port's blueprint search takes
/// them) and the computed properties dropped from answers. Port's blueprint search has no
/// parameter to leave calculated properties out, and `include` may not be honoured by every
/// Port; dropping them here means they can never make an entity look changed.
#[derive(Clone, Debug)]
pub(super) struct SearchShape {
    blueprint: String,
    include: Vec<String>,
    computed: BTreeSet<String>,
}

impl SearchShape {
    pub(super) fn of(blueprint: &Blueprint) -> SearchShape {
        let computed: BTreeSet<String> = COMPUTED_PROPERTIES
            .iter()
            .filter_map(|key| blueprint.0.get(*key).and_then(Json::as_object))
            .flat_map(|defs| defs.keys().cloned())
            .collect();
        let mut include: Vec<String> = COMPARED_META.iter().map(|m| m.to_string()).collect();
        include.extend(
            blueprint
                .properties()
                .keys()
                .filter(|p| !computed.contains(*p))
                .cloned(),
        );
        include.extend(blueprint.relations().into_iter().map(|r| r.name));
        SearchShape {
            blueprint: blueprint.identifier().to_string(),
            include,
            computed,
        }
    }
}

/// How much of a search to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Paging {
    /// Every page, [`SEARCH_PAGE`] entities each.
    All,
    /// One page of one entity: what `validate --catalog` sends to learn whether Port accepts
    /// the request, at the least cost.
    Probe,
}

impl Paging {
    fn limit(self, full: usize) -> usize {
        match self {
            Paging::All => full,
            Paging::Probe => 1,
        }
    }
}

/// Every page of a search within one blueprint. `None` when the blueprint does not exist.
async fn search(
    http: &Http,
    shape: &SearchShape,
    query: Json,
    paging: Paging,
) -> Result<Option<Vec<Found>>, PortError> {
    let blueprint = &shape.blueprint;
    let path = format!("/blueprints/{}/entities/search", encode_segment(blueprint));
    let context = format!("search of blueprint {blueprint}");
    let body = json!({
        "query": query, "limit": paging.limit(SEARCH_PAGE), "include": shape.include,
    });
    let mut found = Vec::new();
    let exists = read_pages(http, &path, &context, body, true, paging, |raw| {
        let mut f = parse_found(&context, blueprint, raw)?;
        if let Some(props) = f.entity.properties.as_mut() {
            props.retain(|name, _| !shape.computed.contains(name));
        }
        found.push(f);
        Ok(())
    })
    .await?;
    Ok(exists.then_some(found))
}

fn parse_found(context: &str, blueprint: &str, raw: &Json) -> Result<Found, PortError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| unexpected(context, "an entity in the answer is not an object"))?;
    let identifier = obj
        .get("identifier")
        .and_then(Json::as_str)
        .ok_or_else(|| unexpected(context, "an entity in the answer has no identifier"))?;
    if let Some(other) = obj.get("blueprint")
        && other.as_str() != Some(blueprint)
    {
        return Err(unexpected(
            context,
            &format!("Port returned entity {identifier:?} of blueprint {other}"),
        ));
    }
    let mut entity = Entity::new(blueprint, identifier);
    entity.title = obj.get("title").cloned();
    entity.icon = obj.get("icon").cloned();
    entity.team = obj.get("team").cloned();
    entity.properties = object_field(context, identifier, obj, "properties")?;
    entity.relations = object_field(context, identifier, obj, "relations")?;
    let datasource = DATASOURCE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Json::as_str))
        .map(str::to_string);
    Ok(Found { entity, datasource })
}

fn object_field(
    context: &str,
    identifier: &str,
    obj: &Map<String, Json>,
    field: &str,
) -> Result<Option<Map<String, Json>>, PortError> {
    match obj.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map.clone())),
        Some(other) => Err(unexpected(
            context,
            &format!("{field} of entity {identifier:?} is not an object: {other}"),
        )),
    }
}

/// Every page of the ownership listing for one datasource prefix and suffix.
async fn list_datasource(
    http: &Http,
    prefix: &str,
    suffix: &str,
    paging: Paging,
) -> Result<Vec<EntityKey>, PortError> {
    let path = "/blueprints/entities/datasource-entities";
    let context = format!("ownership listing for {suffix}");
    let body = json!({
        "datasource_prefix": prefix, "datasource_suffix": suffix,
        "limit": paging.limit(OWNERSHIP_PAGE),
    });
    let mut keys = Vec::new();
    read_pages(http, path, &context, body, false, paging, |e| {
        let identifier = e.get("identifier").and_then(Json::as_str);
        let blueprint = e.get("blueprint").and_then(Json::as_str);
        match (blueprint, identifier) {
            (Some(b), Some(i)) => {
                keys.push(EntityKey::new(b, i));
                Ok(())
            }
            _ => Err(unexpected(
                &context,
                "an entity in the answer lacks its blueprint or identifier",
            )),
        }
    })
    .await?;
    Ok(keys)
}

/// Reads every page at `path`: `body`, then `body` with `from` set to each page's `next` cursor,
/// handing every item of every page's `entities` to `each` (only the first page with
/// [`Paging::Probe`]). Returns `false` without reading further when the first page is a 404 and
/// `missing_ok` (a blueprint that does not exist). A cursor Port already gave, or more than
/// [`MAX_PAGES`] pages, is an error: such an answer would otherwise page forever, and a partial
/// read must not pass for the whole.
async fn read_pages(
    http: &Http,
    path: &str,
    context: &str,
    mut body: Json,
    missing_ok: bool,
    paging: Paging,
    mut each: impl FnMut(&Json) -> Result<(), PortError>,
) -> Result<bool, PortError> {
    let mut seen: HashSet<String> = HashSet::new();
    for page in 0..MAX_PAGES {
        let reply = http
            .send(Method::POST, path, Some(&body), None, Traffic::Read)
            .await?;
        if reply.status == 404 && missing_ok && page == 0 {
            return Ok(false);
        }
        if !reply.is_success() {
            return Err(refused("POST", path, &reply));
        }
        let entities = reply
            .body
            .get("entities")
            .and_then(Json::as_array)
            .ok_or_else(|| unexpected(context, "the answer has no entities list"))?;
        for item in entities {
            each(item)?;
        }
        if paging == Paging::Probe {
            return Ok(true);
        }
        match reply.body.get("next") {
            None | Some(Json::Null) => return Ok(true),
            Some(Json::String(next)) if next.is_empty() => return Ok(true),
            Some(Json::String(next)) => {
                if !seen.insert(next.clone()) {
                    return Err(unexpected(
                        context,
                        &format!("Port returned page cursor {next:?} a second time"),
                    ));
                }
                body["from"] = Json::String(next.clone());
            }
            Some(other) => {
                return Err(unexpected(
                    context,
                    &format!("the page cursor is not a string: {other}"),
                ));
            }
        }
    }
    Err(unexpected(
        context,
        &format!("Port still had more pages after {MAX_PAGES}"),
    ))
}

/// Whether Port created this entity as an empty relation target (`create_missing_related_entities`):
/// nothing but an identifier, and a title that is absent or the identifier itself.
fn is_placeholder(entity: &Entity) -> bool {
    let empty = |v: &Option<Json>| match v {
        None | Some(Json::Null) => true,
        Some(Json::Array(a)) => a.is_empty(),
        Some(Json::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    let no_values = |m: &Option<Map<String, Json>>| {
        m.as_ref().is_none_or(|m| {
            m.values()
                .all(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
        })
    };
    let title_empty = empty(&entity.title)
        || entity.title.as_ref().and_then(Json::as_str) == Some(entity.identifier.as_str());
    title_empty
        && empty(&entity.icon)
        && empty(&entity.team)
        && no_values(&entity.properties)
        && no_values(&entity.relations)
}

/// Runs `tasks` on the runtime and returns their results in order; the first error wins. The
/// HTTP client's semaphore bounds how many requests they send at once.
pub(super) async fn run_all<T, F>(tasks: impl IntoIterator<Item = F>) -> Result<Vec<T>, PortError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, PortError>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut count = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        set.spawn(async move { (i, task.await) });
        count += 1;
    }
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.map_err(|e| unexpected("a Port request task", &e.to_string()))?;
        results[i] = Some(result?);
    }
    Ok(results.into_iter().flatten().collect())
}

pub(super) fn unexpected(context: &str, message: &str) -> PortError {
    PortError::Unexpected {
        context: context.to_string(),
        message: message.to_string(),
    }
}

pub(super) fn refused(method: &str, path: &str, reply: &super::client::Reply) -> PortError {
    PortError::Refused {
        method: method.to_string(),
        path: path.to_string(),
        status: reply.status,
        message: reply.message(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gone_account_candidates_are_the_unknown_account_ids_entities_mention() {
        let mut e = super::Entity::new("awsSqsQueue", "arn:aws:sqs:us-east-1:444444444444:q");
        e.relations = serde_json::json!({"account": "444444444444", "other": ["123"]})
            .as_object()
            .cloned();
        let known = vec!["222222222222".to_string()];
        let mut mine = super::Entity::new("x", "arn:aws:s3:::222222222222-logs");
        mine.relations = None;
        assert_eq!(
            super::gone_account_candidates([&e, &mine].into_iter(), &known, None),
            vec!["444444444444".to_string()]
        );
    }
    use super::*;

    #[test]
    fn empty_relation_targets_are_recognised_as_placeholders() {
        let mut e = Entity::new("acct", "111");
        assert!(is_placeholder(&e));
        e.title = Some(json!("111"));
        e.properties = Some(Map::new());
        assert!(is_placeholder(&e));
        e.properties = Some(
            json!({"name": "prod"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert!(!is_placeholder(&e));
    }

    #[test]
    fn search_results_of_another_blueprint_are_an_error() {
        let raw = json!({"identifier": "a", "blueprint": "other"});
        assert!(parse_found("ctx", "mine", &raw).is_err());
        let ok = parse_found(
            "ctx",
            "mine",
            &json!({"identifier": "a", "blueprint": "mine",
            "properties": {"x": 1}, "$datasource": "port-ocean/aws-v3/1/x/exporter"}),
        );
        let ok = ok.expect("valid");
        assert_eq!(
            ok.datasource.as_deref(),
            Some("port-ocean/aws-v3/1/x/exporter")
        );
        assert_eq!(ok.entity.properties, json!({"x": 1}).as_object().cloned());
    }

    #[test]
    fn a_search_asks_for_the_compared_fields_by_identifier_and_never_for_computed_ones() {
        let bp = Blueprint(json!({"identifier": "svc", "title": "Service",
            "schema": {"properties": {"lang": {"type": "string"}, "tier": {"type": "number"}}},
            "relations": {"owner": {"target": "team", "many": false, "required": false}},
            "mirrorProperties": {"ownerName": {"path": "owner.$title"}},
            "calculationProperties": {"url": {"calculation": ".identifier", "type": "string"}},
            "aggregationProperties": {"deps": {"title": "Deps", "target": "svc",
                "calculationSpec": {"func": "count", "calculationBy": "entities"}}}}));
        let shape = SearchShape::of(&bp);
        assert_eq!(
            shape.include,
            [
                "$identifier",
                "$title",
                "$icon",
                "$team",
                "lang",
                "tier",
                "owner"
            ]
        );
        assert_eq!(
            shape.computed.iter().collect::<Vec<_>>(),
            ["deps", "ownerName", "url"]
        );
    }

    #[test]
    fn identifiers_are_batched_per_blueprint() {
        let keys: Vec<EntityKey> = (0..250)
            .map(|i| EntityKey::new(if i % 2 == 0 { "a" } else { "b" }, format!("id{i}")))
            .collect();
        let batches = identifier_batches(&keys);
        let sizes: Vec<(String, usize)> = batches
            .iter()
            .map(|(b, ids)| (b.clone(), ids.len()))
            .collect();
        assert_eq!(
            sizes,
            vec![
                ("a".into(), 100),
                ("a".into(), 25),
                ("b".into(), 100),
                ("b".into(), 25)
            ]
        );
    }
}
