//! Writing to Port: blueprint bootstrap, bulk upserts in relation order with retries of missing
//! targets, and bulk deletes that never cascade. Every write is idempotent (`upsert=true`,
//! deletes where 404 means done), so a retry after a lost answer cannot duplicate anything.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use super::client::{Http, PortError, Traffic, encode_segment};
use super::read::{refused, unexpected};
use crate::core::model::{Blueprint, EntityKey, WriteOptions};
use crate::core::writes::{
    ApplyReport, BlueprintChange, Delete, Progress, Rejected, Stop, Upsert, WriteAction, Writes,
};

/// Port rejects bulk upserts of more than 20 entities with 422.
const BULK_UPSERT_MAX: usize = 20;
/// Port rejects bulk deletes of more than 100 identifiers with 422.
const BULK_DELETE_MAX: usize = 100;
/// Port's body limit is 1 MiB; staying 10% under it leaves room for the envelope and for
/// differences in how Port counts.
const BULK_BODY_MAX_BYTES: usize = 900 * 1024;
/// Passes over entities whose relation targets were missing; each pass must make progress.
const MAX_DEPENDENCY_PASSES: usize = 10;

pub(super) async fn apply(
    http: &Arc<Http>,
    writes: &Writes,
    progress: &dyn Progress,
) -> ApplyReport {
    let before = http.counts().writes;
    let mut report = ApplyReport::default();
    progress.start((writes.blueprints.len() + writes.upserts.len() + writes.deletes.len()) as u64);
    let mut result = apply_blueprints(http, &writes.blueprints, &mut report, progress).await;
    if result.is_ok() {
        result = apply_upserts(http, &writes.upserts, &mut report, progress).await;
    }
    // Deletes run only when every upsert got a definite answer: after an uncertain answer the
    // apply stops, so nothing is deleted on a guess.
    if result.is_ok() {
        result = apply_deletes(http, &writes.deletes, &mut report, progress).await;
    }
    match result {
        Ok(()) => {}
        Err(PortError::StoppedOnRequest) => {
            tracing::info!("the Port apply stopped on request after the writes in flight");
            report.stopped = Some(Stop::OnRequest);
        }
        Err(e) => {
            tracing::error!(error = %e, "the Port apply stopped");
            report.stopped = Some(Stop::Failed(e.to_string()));
        }
    }
    report.write_requests = http.counts().writes.saturating_sub(before);
    progress.finish();
    report
}

async fn apply_blueprints(
    http: &Http,
    changes: &[BlueprintChange],
    report: &mut ApplyReport,
    progress: &dyn Progress,
) -> Result<(), PortError> {
    // A stop ends an apply before its last write; with nothing to write here, the next step
    // checks for it before its first write, and an apply with no writes at all has none to end.
    if changes.is_empty() {
        return Ok(());
    }
    unless_stopped(progress)?;
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
        report
            .blueprints_written
            .push(change.identifier().to_string());
        progress.advance(1);
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

/// Entities that can share one bulk request: same account (User-Agent) and same flags.
type Group = (String, WriteOptions);

/// An upsert waiting for a retry because a relation target did not exist yet.
struct Deferred {
    order: usize,
    upsert: Upsert,
    message: String,
}

#[derive(Default)]
struct BatchResult {
    upserted: Vec<EntityKey>,
    deleted: Vec<EntityKey>,
    rejected: Vec<Rejected>,
    deferred: Vec<Deferred>,
    fatal: Option<PortError>,
}

async fn apply_upserts(
    http: &Arc<Http>,
    upserts: &[Upsert],
    report: &mut ApplyReport,
    progress: &dyn Progress,
) -> Result<(), PortError> {
    let mut pending: Vec<(usize, Upsert)> = upserts.iter().cloned().enumerate().collect();
    let mut passes = 0;
    while !pending.is_empty() {
        let before = pending.len();
        let mut deferred = upsert_pass(http, pending, report, progress).await?;
        passes += 1;
        if deferred.is_empty() {
            break;
        }
        if deferred.len() == before || passes >= MAX_DEPENDENCY_PASSES {
            // No progress: the targets will not appear by retrying.
            for d in deferred {
                report.rejected.push(Rejected {
                    action: WriteAction::Upsert,
                    key: d.upsert.entity.key(),
                    message: d.message,
                });
                progress.advance(1);
            }
            break;
        }
        deferred.sort_by_key(|d| d.order);
        tracing::debug!(
            count = deferred.len(),
            "retrying upserts whose relation targets were missing"
        );
        pending = deferred.into_iter().map(|d| (d.order, d.upsert)).collect();
    }
    Ok(())
}

/// One pass over `pending`, blueprint by blueprint in the order the plan wants them; the batches
/// of one blueprint go out concurrently.
async fn upsert_pass(
    http: &Arc<Http>,
    pending: Vec<(usize, Upsert)>,
    report: &mut ApplyReport,
    progress: &dyn Progress,
) -> Result<Vec<Deferred>, PortError> {
    let mut deferred = Vec::new();
    for (blueprint, items) in stages(pending, |(_, u)| u.entity.blueprint.clone()) {
        unless_stopped(progress)?;
        let mut groups: Vec<(Group, Vec<(usize, Upsert)>)> = Vec::new();
        for item in items {
            let group = (item.1.account.clone(), item.1.write);
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, list)) => list.push(item),
                None => groups.push((group, vec![item])),
            }
        }
        let mut jobs = Vec::new();
        for ((account, write), items) in groups {
            for batch in upsert_batches(items, report, progress) {
                let http = Arc::clone(http);
                let blueprint = blueprint.clone();
                let account = account.clone();
                jobs.push(
                    async move { send_upserts(&http, &blueprint, &account, write, batch).await },
                );
            }
        }
        run_batches(jobs, http.concurrency(), report, progress, &mut deferred).await?;
    }
    Ok(deferred)
}

/// Checked before each stage (and, in [`run_batches`], before each request): a stop lets the
/// requests in flight finish.
fn unless_stopped(progress: &dyn Progress) -> Result<(), PortError> {
    if progress.stop_requested() {
        Err(PortError::StoppedOnRequest)
    } else {
        Ok(())
    }
}

/// Items grouped by a key, groups in the order their key first appears, items in their order.
fn stages<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<(String, Vec<T>)> {
    let mut order: Vec<(String, Vec<T>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let k = key(&item);
        match index.get(&k) {
            Some(&i) => order[i].1.push(item),
            None => {
                index.insert(k.clone(), order.len());
                order.push((k, vec![item]));
            }
        }
    }
    order
}

/// Cuts one group into bulk requests: at most 20 entities and under the body limit each. An
/// entity too large for any request is rejected here.
fn upsert_batches(
    items: Vec<(usize, Upsert)>,
    report: &mut ApplyReport,
    progress: &dyn Progress,
) -> Vec<Vec<(usize, Upsert)>> {
    let mut batches = Vec::new();
    let mut current: Vec<(usize, Upsert)> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = serde_json::to_vec(&item.1.entity)
            .map(|v| v.len())
            .unwrap_or(0)
            + 1;
        if size > BULK_BODY_MAX_BYTES {
            report.rejected.push(Rejected {
                action: WriteAction::Upsert,
                key: item.1.entity.key(),
                message: format!(
                    "the entity is {size} bytes, more than Port's 1 MiB request limit"
                ),
            });
            progress.advance(1);
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
/// the report. A new request starts only while nothing failed and no stop was requested: after
/// either, the requests in flight finish and are recorded, and the first fatal error (or the stop)
/// is returned.
async fn run_batches<F>(
    jobs: Vec<F>,
    in_flight: usize,
    report: &mut ApplyReport,
    progress: &dyn Progress,
    deferred: &mut Vec<Deferred>,
) -> Result<(), PortError>
where
    F: Future<Output = BatchResult> + Send + 'static,
{
    let mut jobs = jobs.into_iter();
    let mut set = tokio::task::JoinSet::new();
    let mut fatal = None;
    let mut stopped = false;
    loop {
        while fatal.is_none() && !stopped && set.len() < in_flight {
            if progress.stop_requested() {
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
        progress
            .advance((result.upserted.len() + result.deleted.len() + result.rejected.len()) as u64);
        report.upserted.extend(result.upserted);
        report.deleted.extend(result.deleted);
        report.rejected.extend(result.rejected);
        deferred.extend(result.deferred);
        if fatal.is_none() {
            fatal = result.fatal;
        }
    }
    match fatal {
        Some(e) => Err(e),
        None if stopped && jobs.len() > 0 => Err(PortError::StoppedOnRequest),
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
                                result.deferred.push(Deferred {
                                    order,
                                    upsert,
                                    message,
                                });
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

async fn apply_deletes(
    http: &Arc<Http>,
    deletes: &[Delete],
    report: &mut ApplyReport,
    progress: &dyn Progress,
) -> Result<(), PortError> {
    let mut unused = Vec::new();
    for (blueprint, items) in stages(deletes.to_vec(), |d| d.key.blueprint.clone()) {
        unless_stopped(progress)?;
        let mut jobs = Vec::new();
        for (account, items) in stages(items, |d| d.account.clone().unwrap_or_default()) {
            let ids: Vec<String> = items.into_iter().map(|d| d.key.identifier).collect();
            for chunk in ids.chunks(BULK_DELETE_MAX) {
                let http = Arc::clone(http);
                let blueprint = blueprint.clone();
                let account = Some(account.clone()).filter(|a| !a.is_empty());
                let chunk = chunk.to_vec();
                jobs.push(async move {
                    send_deletes(&http, &blueprint, account.as_deref(), chunk).await
                });
            }
        }
        run_batches(jobs, http.concurrency(), report, progress, &mut unused).await?;
    }
    Ok(())
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
        let mut report = ApplyReport::default();
        let items: Vec<_> = (0..45).map(|i| upsert(&format!("e{i}"), 10)).collect();
        let sizes: Vec<usize> = upsert_batches(items, &mut report, &NoProgress)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![20, 20, 5]);

        let items: Vec<_> = (0..5)
            .map(|i| upsert(&format!("e{i}"), 300 * 1024))
            .collect();
        let sizes: Vec<usize> = upsert_batches(items, &mut report, &NoProgress)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);

        let items = vec![upsert("huge", 2 * 1024 * 1024), upsert("small", 1)];
        let batches = upsert_batches(items, &mut report, &NoProgress);
        assert_eq!(batches.len(), 1);
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

    #[test]
    fn stages_keep_first_appearance_order() {
        let s = stages(vec!["b1", "a1", "b2", "c1", "a2"], |x| x[..1].to_string());
        let keys: Vec<(String, Vec<&str>)> = s;
        assert_eq!(
            keys,
            vec![
                ("b".to_string(), vec!["b1", "b2"]),
                ("a".to_string(), vec!["a1", "a2"]),
                ("c".to_string(), vec!["c1"])
            ]
        );
    }
}
