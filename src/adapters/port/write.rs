//! Writing to Port, one blueprint's share at a time for the shared apply loop
//! ([`crate::adapters::apply`]): blueprint bootstrap, bulk upserts that report missing relation
//! targets for the loop to retry, and bulk deletes that never cascade. Every write is idempotent
//! (`upsert=true`, deletes where 404 means done), so a retry after a lost answer cannot duplicate
//! anything.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use super::client::{Http, PortError, Traffic, encode_segment};
use super::read::{refused, unexpected};
use crate::adapters::apply::{self, Writer, stages};
use crate::core::model::{Blueprint, EntityKey, WriteOptions};
use crate::core::writes::{
    ApplyReport, BlueprintChange, Delete, Progress, Rejected, Stop, Tally, Upsert, WriteAction,
    Writes,
};

/// Port rejects bulk upserts of more than 20 entities with 422.
const BULK_UPSERT_MAX: usize = 20;
/// Port rejects bulk deletes of more than 100 identifiers with 422.
const BULK_DELETE_MAX: usize = 100;
/// Port's body limit is 1 MiB; staying 10% under it leaves room for the envelope and for
/// differences in how Port counts.
const BULK_BODY_MAX_BYTES: usize = 900 * 1024;

/// Port's side of the shared apply loop: bulk requests, several in flight at once.
struct PortWriter<'h> {
    http: &'h Arc<Http>,
    /// Write requests counted before this apply.
    before: usize,
}

pub(super) async fn apply(
    http: &Arc<Http>,
    writes: &Writes,
    progress: &dyn Progress,
) -> ApplyReport {
    let before = http.counts().writes;
    apply::apply(&mut PortWriter { http, before }, writes, progress).await
}

impl Writer for PortWriter<'_> {
    async fn blueprints(
        &mut self,
        changes: &[BlueprintChange],
        tally: &mut Tally<'_>,
    ) -> Result<(), Stop> {
        apply_blueprints(self.http, changes, tally)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))
    }

    /// Bulk requests of at most 20 entities that share an account (User-Agent) and write flags,
    /// sent concurrently.
    async fn upserts(
        &mut self,
        blueprint: &str,
        stage: Vec<(usize, &Upsert)>,
        tally: &mut Tally<'_>,
        missing: &mut Vec<(usize, String)>,
    ) -> Result<(), Stop> {
        let owned = stage.into_iter().map(|(i, u)| (i, u.clone()));
        let groups = stages(owned, |(_, u)| (u.account.clone(), u.write));
        let mut jobs = Vec::new();
        for ((account, write), items) in groups {
            for batch in upsert_batches(items, tally) {
                let http = Arc::clone(self.http);
                let blueprint = blueprint.to_string();
                let account = account.clone();
                jobs.push(
                    async move { send_upserts(&http, &blueprint, &account, write, batch).await },
                );
            }
        }
        run_batches(jobs, self.http.concurrency(), tally, missing).await
    }

    /// Bulk deletes of at most 100 identifiers per account, sent concurrently.
    async fn deletes(
        &mut self,
        blueprint: &str,
        stage: Vec<&Delete>,
        tally: &mut Tally<'_>,
    ) -> Result<(), Stop> {
        let mut jobs = Vec::new();
        for (account, items) in stages(stage, |d| d.account.clone().filter(|a| !a.is_empty())) {
            let ids: Vec<String> = items
                .into_iter()
                .map(|d| d.key.identifier.clone())
                .collect();
            for chunk in ids.chunks(BULK_DELETE_MAX) {
                let http = Arc::clone(self.http);
                let blueprint = blueprint.to_string();
                let account = account.clone();
                let chunk = chunk.to_vec();
                jobs.push(async move {
                    send_deletes(&http, &blueprint, account.as_deref(), chunk).await
                });
            }
        }
        run_batches(jobs, self.http.concurrency(), tally, &mut Vec::new()).await
    }

    fn write_requests(&self, _: &Tally<'_>) -> usize {
        self.http.counts().writes.saturating_sub(self.before)
    }
}

async fn apply_blueprints(
    http: &Http,
    changes: &[BlueprintChange],
    tally: &mut Tally<'_>,
) -> Result<(), PortError> {
    let creates: Vec<(&String, &Blueprint)> = changes
        .iter()
        .filter_map(|c| match c {
            BlueprintChange::Create {
                identifier,
                definition,
            } => Some((identifier, definition)),
            BlueprintChange::Update { .. } => None,
        })
        .collect();
    // Step 1: create blueprints whose relation targets exist (or were created just before) with
    // their relations, in one request; the rest (cycles) without relations.
    let to_create: BTreeSet<&str> = creates.iter().map(|(id, _)| id.as_str()).collect();
    let mut ready: BTreeSet<&str> = BTreeSet::new();
    let mut order: Vec<(&String, &Blueprint, bool)> = Vec::new();
    let mut left = creates.clone();
    loop {
        let before = left.len();
        left.retain(|(id, def)| {
            let targets_ready = def.relations().iter().all(|r| {
                r.target == id.as_str()
                    || !to_create.contains(r.target.as_str())
                    || ready.contains(r.target.as_str())
            });
            if targets_ready {
                ready.insert(id.as_str());
                order.push((id, def, true));
            }
            !targets_ready
        });
        if left.is_empty() || left.len() == before {
            break;
        }
    }
    order.extend(left.into_iter().map(|(id, def)| (id, def, false)));

    let mut needs_relations = BTreeSet::new();
    let mut existed = BTreeSet::new();
    for (identifier, definition, with_relations) in &order {
        if create_blueprint(http, identifier, definition, *with_relations).await? {
            if !with_relations && !definition.relations().is_empty() {
                needs_relations.insert(identifier.to_string());
            }
        } else {
            existed.insert(identifier.to_string());
        }
    }
    // Step 2: add relations to the blueprints created without them, and what existing ones lack.
    for change in changes {
        match change {
            BlueprintChange::Create {
                identifier,
                definition,
            } => {
                let relations = definition
                    .0
                    .get("relations")
                    .and_then(Json::as_object)
                    .cloned()
                    .unwrap_or_default();
                if existed.contains(identifier) {
                    add_missing(http, identifier, &definition.properties(), &relations).await?;
                } else if needs_relations.contains(identifier) {
                    patch_blueprint(http, identifier, json!({"relations": relations})).await?;
                }
            }
            BlueprintChange::Update {
                identifier,
                add_properties,
                add_relations,
            } => add_missing(http, identifier, add_properties, add_relations).await?,
        }
        tally.blueprint_written(change.identifier().to_string());
        tally.advance(1);
    }
    Ok(())
}

/// Creates blueprint `identifier` unless Port already has it (an interrupted earlier run, or a
/// retry after a lost answer); `false` when it was there. Port documents no status for creating
/// a blueprint that exists, so it is read first, as Ocean does; a create that fails is read once
/// more, so that a blueprint made between the two requests counts as there.
async fn create_blueprint(
    http: &Http,
    identifier: &str,
    definition: &Blueprint,
    with_relations: bool,
) -> Result<bool, PortError> {
    if blueprint_exists(http, identifier).await? {
        return Ok(false);
    }
    let mut body = if with_relations {
        definition.0.clone()
    } else {
        definition.without_relations().0
    };
    if let Some(obj) = body.as_object_mut() {
        obj.insert("identifier".into(), Json::String(identifier.to_string()));
    }
    let reply = http
        .send(
            Method::POST,
            "/blueprints",
            Some(&body),
            None,
            Traffic::Write,
        )
        .await?;
    if reply.is_success() {
        return Ok(true);
    }
    if blueprint_exists(http, identifier).await? {
        return Ok(false);
    }
    Err(PortError::Refused {
        method: "POST".into(),
        path: "/blueprints".into(),
        status: reply.status,
        message: format!("creating blueprint {identifier}: {}", reply.message()),
    })
}

/// Whether Port has blueprint `identifier` (`GET /v1/blueprints/{identifier}`: 200 or 404).
async fn blueprint_exists(http: &Http, identifier: &str) -> Result<bool, PortError> {
    let path = format!("/blueprints/{}", encode_segment(identifier));
    let reply = http
        .send(Method::GET, &path, None, None, Traffic::Read)
        .await?;
    match reply.status {
        404 => Ok(false),
        _ if reply.is_success() => Ok(true),
        _ => Err(refused("GET", &path, &reply)),
    }
}

/// Adds the properties and relations `identifier` lacks, keeping everything it has. The whole
/// merged `schema` and `relations` are sent, which is right whether Port's PATCH merges or
/// replaces those keys.
async fn add_missing(
    http: &Http,
    identifier: &str,
    properties: &Map<String, Json>,
    relations: &Map<String, Json>,
) -> Result<(), PortError> {
    let path = format!("/blueprints/{}", encode_segment(identifier));
    let reply = http
        .send(Method::GET, &path, None, None, Traffic::Read)
        .await?;
    if !reply.is_success() {
        return Err(refused("GET", &path, &reply));
    }
    let current = reply
        .body
        .get("blueprint")
        .and_then(Json::as_object)
        .ok_or_else(|| unexpected(&format!("GET {path}"), "the answer has no blueprint"))?;
    let mut schema = current
        .get("schema")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut props = schema
        .get("properties")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut rels = current
        .get("relations")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for (name, def) in properties {
        if !props.contains_key(name) {
            props.insert(name.clone(), def.clone());
            changed = true;
        }
    }
    for (name, def) in relations {
        if !rels.contains_key(name) {
            rels.insert(name.clone(), def.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    schema.insert("properties".into(), Json::Object(props));
    patch_blueprint(
        http,
        identifier,
        json!({"schema": schema, "relations": rels}),
    )
    .await
}

async fn patch_blueprint(http: &Http, identifier: &str, body: Json) -> Result<(), PortError> {
    let path = format!("/blueprints/{}", encode_segment(identifier));
    let reply = http
        .send(Method::PATCH, &path, Some(&body), None, Traffic::Write)
        .await?;
    if reply.is_success() {
        Ok(())
    } else {
        Err(refused("PATCH", &path, &reply))
    }
}

#[derive(Default)]
struct BatchResult {
    upserted: Vec<EntityKey>,
    deleted: Vec<EntityKey>,
    rejected: Vec<Rejected>,
    /// Upserts refused for a missing relation target, by position, with Port's message.
    missing: Vec<(usize, String)>,
    fatal: Option<PortError>,
}

/// Cuts one group into bulk requests: at most 20 entities and under the body limit each. An
/// entity too large for any request is rejected here.
fn upsert_batches(items: Vec<(usize, Upsert)>, tally: &mut Tally<'_>) -> Vec<Vec<(usize, Upsert)>> {
    let mut batches = Vec::new();
    let mut current: Vec<(usize, Upsert)> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = serde_json::to_vec(&item.1.entity)
            .map(|v| v.len())
            .unwrap_or(0)
            + 1;
        if size > BULK_BODY_MAX_BYTES {
            tally.rejected(
                WriteAction::Upsert,
                item.1.entity.key(),
                format!("the entity is {size} bytes, more than Port's 1 MiB request limit"),
            );
            continue;
        }
        if !current.is_empty()
            && (current.len() == BULK_UPSERT_MAX || bytes + size > BULK_BODY_MAX_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Runs the bulk requests of one stage, at most `in_flight` at once, moving their results into
/// the tally. A new request starts only while nothing failed and no stop was requested: after
/// either, the requests in flight finish and are recorded, and the first failure (or the stop)
/// is returned.
async fn run_batches<F>(
    jobs: Vec<F>,
    in_flight: usize,
    tally: &mut Tally<'_>,
    missing: &mut Vec<(usize, String)>,
) -> Result<(), Stop>
where
    F: Future<Output = BatchResult> + Send + 'static,
{
    let mut jobs = jobs.into_iter();
    let mut set = tokio::task::JoinSet::new();
    let mut fatal = None;
    let mut stopped = false;
    loop {
        while fatal.is_none() && !stopped && set.len() < in_flight {
            if tally.stop_requested() {
                stopped = true;
                break;
            }
            match jobs.next() {
                Some(job) => {
                    set.spawn(job);
                }
                None => break,
            }
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let result = match joined {
            Ok(r) => r,
            Err(e) => BatchResult {
                fatal: Some(unexpected("a Port write task", &e.to_string())),
                ..BatchResult::default()
            },
        };
        for key in result.upserted {
            tally.upserted(key);
        }
        for key in result.deleted {
            tally.deleted(key);
        }
        for r in result.rejected {
            tally.rejected(r.action, r.key, r.message);
        }
        missing.extend(result.missing);
        if fatal.is_none() {
            fatal = result.fatal;
        }
    }
    match fatal {
        Some(e) => Err(Stop::Failed(e.to_string())),
        None if stopped && jobs.len() > 0 => Err(Stop::OnRequest),
        None => Ok(()),
    }
}

/// Sends one bulk upsert, splitting it when Port finds the body too large or malformed so that
/// one bad entity does not sink the others.
async fn send_upserts(
    http: &Http,
    blueprint: &str,
    account: &str,
    write: WriteOptions,
    batch: Vec<(usize, Upsert)>,
) -> BatchResult {
    let mut result = BatchResult::default();
    let path = format!(
        "/blueprints/{}/entities/bulk?upsert=true&merge={}&create_missing_related_entities={}",
        encode_segment(blueprint),
        write.merge,
        write.create_missing_related
    );
    let mut stack = vec![batch];
    while let Some(mut batch) = stack.pop() {
        let entities: Vec<&crate::core::model::Entity> =
            batch.iter().map(|(_, u)| &u.entity).collect();
        let body = json!({ "entities": entities });
        let reply = match http
            .send(
                Method::POST,
                &path,
                Some(&body),
                Some(account),
                Traffic::Write,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                result.fatal = Some(e);
                return result;
            }
        };
        match reply.status {
            200 | 201 | 207 => match bulk_outcomes(&reply.body, &batch) {
                Ok(outcomes) => {
                    for ((order, upsert), outcome) in batch.into_iter().zip(outcomes) {
                        match outcome {
                            None => result.upserted.push(upsert.entity.key()),
                            Some((status, code, message))
                                if status == 404 && code == "not_found" =>
                            {
                                result.missing.push((order, message));
                            }
                            Some((_, _, message)) => result.rejected.push(Rejected {
                                action: WriteAction::Upsert,
                                key: upsert.entity.key(),
                                message,
                            }),
                        }
                    }
                }
                Err(message) => {
                    result.fatal = Some(unexpected(
                        &format!("bulk upsert into blueprint {blueprint}"),
                        &message,
                    ));
                    return result;
                }
            },
            413 | 422 if batch.len() > 1 => {
                let second = batch.split_off(batch.len() / 2);
                stack.push(second);
                stack.push(batch);
            }
            400 | 404 | 413 | 422 => {
                let message = match reply.status {
                    413 => format!("too large for Port: {}", reply.message()),
                    404 => format!(
                        "blueprint {blueprint} or a target was not found: {}",
                        reply.message()
                    ),
                    _ => reply.message(),
                };
                for (_, upsert) in batch {
                    result.rejected.push(Rejected {
                        action: WriteAction::Upsert,
                        key: upsert.entity.key(),
                        message: message.clone(),
                    });
                }
            }
            _ => {
                result.fatal = Some(refused("POST", &path, &reply));
                return result;
            }
        }
    }
    result
}

/// Port's per-entity results of a bulk upsert, by request position: `None` for success, or the
/// status, error code and message. Results that do not match the request one to one are an
/// error, because then nothing in the answer can be trusted.
#[allow(clippy::type_complexity)]
fn bulk_outcomes(
    body: &Json,
    batch: &[(usize, Upsert)],
) -> Result<Vec<Option<(u64, String, String)>>, String> {
    let mut outcomes: Vec<Option<Option<(u64, String, String)>>> = vec![None; batch.len()];
    let list = |field: &str| -> Result<Vec<Json>, String> {
        match body.get(field) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Array(items)) => Ok(items.clone()),
            Some(other) => Err(format!("{field} is not a list: {other}")),
        }
    };
    let successes = list("entities")?;
    let failures = list("errors")?;
    for (item, failed) in successes
        .iter()
        .map(|i| (i, false))
        .chain(failures.iter().map(|i| (i, true)))
    {
        let index = item
            .get("index")
            .and_then(Json::as_u64)
            .ok_or_else(|| format!("a result has no index: {item}"))? as usize;
        let Some((_, upsert)) = batch.get(index) else {
            return Err(format!(
                "result index {index} is outside the {} entities sent",
                batch.len()
            ));
        };
        if let Some(id) = item.get("identifier").and_then(Json::as_str)
            && id != upsert.entity.identifier
            && !(failed && id == "unknown")
        {
            return Err(format!(
                "the result for index {index} names {id:?} but {:?} was sent there",
                upsert.entity.identifier
            ));
        }
        if outcomes[index].is_some() {
            return Err(format!("index {index} has more than one result"));
        }
        outcomes[index] = Some(if failed {
            let status = item.get("statusCode").and_then(Json::as_u64).unwrap_or(0);
            let code = item
                .get("error")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            Some((status, code, super::client::describe_error(item)))
        } else {
            None
        });
    }
    let missing = outcomes.iter().filter(|o| o.is_none()).count();
    if missing > 0 {
        return Err(format!(
            "{missing} of the {} entities sent have no result",
            batch.len()
        ));
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// One bulk delete with `delete_dependents=false`. Identifiers Port did not confirm are deleted
/// one by one, where 404 means already gone and a refusal is reported for that entity alone.
async fn send_deletes(
    http: &Http,
    blueprint: &str,
    account: Option<&str>,
    ids: Vec<String>,
) -> BatchResult {
    let mut result = BatchResult::default();
    let path = format!(
        "/blueprints/{}/bulk/entities/delete?delete_dependents=false",
        encode_segment(blueprint)
    );
    let body = json!({ "entities": ids });
    let reply = match http
        .send(Method::POST, &path, Some(&body), account, Traffic::Write)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            result.fatal = Some(e);
            return result;
        }
    };
    let remaining: Vec<String> = match reply.status {
        s if (200..300).contains(&s) => {
            let confirmed = match deleted_entities(&reply.body, &ids) {
                Ok(c) => c,
                Err(message) => {
                    result.fatal = Some(unexpected(
                        &format!("bulk delete in blueprint {blueprint}"),
                        &message,
                    ));
                    return result;
                }
            };
            for id in &confirmed {
                result.deleted.push(EntityKey::new(blueprint, id));
            }
            ids.into_iter()
                .filter(|id| !confirmed.contains(id))
                .collect()
        }
        400 | 404 | 409 | 422 => ids,
        _ => {
            result.fatal = Some(refused("POST", &path, &reply));
            return result;
        }
    };
    for id in remaining {
        let path = format!(
            "/blueprints/{}/entities/{}?delete_dependents=false",
            encode_segment(blueprint),
            encode_segment(&id)
        );
        let reply = match http
            .send(Method::DELETE, &path, None, account, Traffic::Write)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                result.fatal = Some(e);
                return result;
            }
        };
        match reply.status {
            s if (200..300).contains(&s) || s == 404 => {
                result.deleted.push(EntityKey::new(blueprint, &id));
            }
            400 | 409 | 422 => result.rejected.push(Rejected {
                action: WriteAction::Delete,
                key: EntityKey::new(blueprint, &id),
                message: reply.message(),
            }),
            _ => {
                result.fatal = Some(refused("DELETE", &path, &reply));
                return result;
            }
        }
    }
    result
}

/// `deletedEntities` of a bulk delete answer, which must name only identifiers we sent.
fn deleted_entities(body: &Json, sent: &[String]) -> Result<BTreeSet<String>, String> {
    let list = body
        .get("deletedEntities")
        .and_then(Json::as_array)
        .ok_or("the answer has no deletedEntities list")?;
    let sent: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    let mut confirmed = BTreeSet::new();
    for item in list {
        // Port may list identifiers or entity objects; accept both.
        let id = item
            .as_str()
            .or_else(|| item.get("identifier").and_then(Json::as_str))
            .ok_or_else(|| format!("a deleted entity is not an identifier: {item}"))?;
        if !sent.contains(id) {
            return Err(format!(
                "Port reports deleting {id:?}, which was not in the request"
            ));
        }
        confirmed.insert(id.to_string());
    }
    Ok(confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Entity;
    use crate::core::writes::NoProgress;

    fn upsert(id: &str, bytes: usize) -> (usize, Upsert) {
        let mut entity = Entity::new("bp", id);
        entity.title = Some(Json::String("x".repeat(bytes)));
        (
            0,
            Upsert {
                entity,
                account: "1".into(),
                kind: "k".into(),
                write: WriteOptions::default(),
            },
        )
    }

    #[test]
    fn batches_hold_at_most_twenty_entities_and_stay_under_the_body_limit() {
        let writes = Writes::default();
        let mut tally = Tally::start(&writes, &NoProgress);
        let items: Vec<_> = (0..45).map(|i| upsert(&format!("e{i}"), 10)).collect();
        let sizes: Vec<usize> = upsert_batches(items, &mut tally)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![20, 20, 5]);

        let items: Vec<_> = (0..5)
            .map(|i| upsert(&format!("e{i}"), 300 * 1024))
            .collect();
        let sizes: Vec<usize> = upsert_batches(items, &mut tally)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);

        let items = vec![upsert("huge", 2 * 1024 * 1024), upsert("small", 1)];
        let batches = upsert_batches(items, &mut tally);
        assert_eq!(batches.len(), 1);
        let report = tally.finish(None, 0);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].key.identifier, "huge");
    }

    #[test]
    fn bulk_results_are_matched_by_index_and_mismatches_are_errors() {
        let batch = vec![upsert("a", 1), upsert("b", 1)];
        let body = json!({"ok": true,
            "entities": [{"identifier": "b", "index": 1, "created": true}],
            "errors": [{"identifier": "a", "index": 0, "statusCode": 404, "error": "not_found", "message": "m"}]});
        let outcomes = bulk_outcomes(&body, &batch).expect("matching");
        assert_eq!(outcomes[1], None);
        assert_eq!(
            outcomes[0],
            Some((404, "not_found".into(), "not_found: m".into()))
        );

        let short = json!({"ok": true, "entities": [{"identifier": "a", "index": 0}]});
        assert!(bulk_outcomes(&short, &batch).is_err());
        let outside =
            json!({"entities": [{"identifier": "a", "index": 0}, {"identifier": "b", "index": 2}]});
        assert!(bulk_outcomes(&outside, &batch).is_err());
        let swapped =
            json!({"entities": [{"identifier": "b", "index": 0}, {"identifier": "a", "index": 1}]});
        assert!(bulk_outcomes(&swapped, &batch).is_err());
        let twice =
            json!({"entities": [{"identifier": "a", "index": 0}, {"identifier": "a", "index": 0}]});
        assert!(bulk_outcomes(&twice, &batch).is_err());
    }

    #[test]
    fn deletes_confirmed_for_identifiers_never_sent_are_an_error() {
        let sent = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            deleted_entities(&json!({"deletedEntities": ["a"]}), &sent),
            Ok(BTreeSet::from(["a".to_string()]))
        );
        assert!(deleted_entities(&json!({"deletedEntities": ["c"]}), &sent).is_err());
        assert!(deleted_entities(&json!({"ok": true}), &sent).is_err());
    }
}
