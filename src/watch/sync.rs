//! One daemon sync: a full listing, or a re-map of the cached raw items, then plan and apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use crate::app::InWorker;
use crate::catalog::{ApplyReport, Catalog, CatalogError, NoProgress, Progress};
use crate::config::Config;
use crate::mapping::worker::Worker;
use crate::model::{KindSpec, RawItem};
use crate::reconcile::{
    self, CollectError, Collected, InProcess, Issue, ItemMapper, MappingStopped, Plan, PlanOptions,
};
use crate::source::{ListRequest, Source, SourceError, SourceReport};

use super::schedule::Mode;

/// The raw items of the last full listing with the report that says how each scope went, so a
/// re-map withholds exactly the deletes the listing would have.
#[derive(Debug)]
pub struct Cache {
    pub request: ListRequest,
    pub report: SourceReport,
    pub raw: Vec<RawItem>,
    pub bytes: usize,
}

impl Cache {
    /// Keeps `collected`'s raw items when they fit in `limit_bytes`.
    pub fn keep(
        request: ListRequest,
        collected: &mut Collected,
        limit_bytes: u64,
    ) -> Result<Cache, usize> {
        // No raw items: the listing passed the limit and dropped them already.
        let raw = collected.raw.take().ok_or(collected.raw_bytes)?;
        let bytes: usize = raw.iter().map(RawItem::approx_size).sum();
        if bytes as u64 > limit_bytes {
            return Err(bytes);
        }
        let report = collected.report.clone().ok_or(0usize)?;
        Ok(Cache {
            request,
            report,
            raw,
            bytes,
        })
    }

    /// The cached items and report restricted to what `request` lists, or `None` when the cache
    /// lacks something it needs (a new kind, other listing options, other regions): then only a
    /// full listing gives the right answer.
    pub fn covering(&self, request: &ListRequest) -> Option<(SourceReport, Vec<RawItem>)> {
        if request.regions != self.request.regions {
            return None;
        }
        // A kind is covered when it is listed exactly as before: the same specs, one per
        // resource model. A model added or dropped changes which items and scopes it has.
        let by_kind = |kinds: &'_ [KindSpec]| {
            let mut specs: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for k in kinds {
                specs
                    .entry(k.kind.clone())
                    .or_default()
                    .push(serde_json::to_string(k).unwrap_or_default());
            }
            specs.values_mut().for_each(|v| v.sort());
            specs
        };
        let cached = by_kind(&self.request.kinds);
        if !by_kind(&request.kinds)
            .iter()
            .all(|(kind, specs)| cached.get(kind) == Some(specs))
        {
            return None;
        }
        let wanted: BTreeSet<&str> = request.kinds.iter().map(|k| k.kind.as_str()).collect();
        let mut report = self.report.clone();
        // A full listing of the new request would not have tried the dropped kinds, so their
        // failures must not withhold anything now.
        report.listings.retain(|l| wanted.contains(l.kind.as_str()));
        let raw = self
            .raw
            .iter()
            .filter(|i| wanted.contains(i.kind.as_str()))
            .cloned()
            .collect();
        Some((report, raw))
    }
}

/// Why a sync failed; the daemon retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("listing failed: {0}")]
    Source(#[from] SourceError),
    /// The mapping worker ran past the evaluation limit or died: nothing was planned.
    #[error("mapping stopped: {0}")]
    Mapping(String),
    #[error("reading the catalog failed: {0}")]
    Catalog(#[from] CatalogError),
    #[error("the apply stopped: {0}")]
    Stopped(String),
    /// A candidate's mappings fail items that the running mappings map: nothing was planned.
    #[error("{0}")]
    Regressed(String),
    /// This shard is not shard 0 and the catalog still lacks blueprints that shard 0 creates:
    /// nothing was planned; the retry waits for them.
    #[error("waiting for shard 0 to create the blueprints")]
    WaitingForBlueprints,
}

impl From<CollectError> for SyncError {
    fn from(e: CollectError) -> SyncError {
        match e {
            CollectError::Source(e) => SyncError::Source(e),
            CollectError::Mapping(e) => e.into(),
        }
    }
}

impl From<MappingStopped> for SyncError {
    fn from(e: MappingStopped) -> SyncError {
        SyncError::Mapping(e.0)
    }
}

/// How a sync went.
#[derive(Debug)]
pub struct Synced {
    pub collected: Collected,
    pub plan: Plan,
    pub report: Option<ApplyReport>,
}

impl Synced {
    /// Partial: some scope was incomplete, a change was withheld, or a write was rejected.
    pub fn is_partial(&self) -> bool {
        self.plan.is_partial() || self.report.as_ref().is_some_and(|r| !r.rejected.is_empty())
    }
}

/// What a full sync leaves for the next re-map.
pub enum CacheUpdate {
    Keep,
    Replace(Option<Arc<Cache>>),
}

/// One sync's result, with the mode that actually ran (a re-map without a usable cache becomes a
/// full listing) and what to keep for the next re-map.
pub struct SyncRun {
    pub mode: Mode,
    pub result: Result<Synced, SyncError>,
    pub cache: CacheUpdate,
}

/// Lists (or, for a re-map the cache covers, takes the cached items) and maps: the mode that ran,
/// what it collected and what to keep for the next re-map.
async fn gather<S: Source>(
    mode: Mode,
    config: &Config,
    worker: Option<&tokio::sync::Mutex<Worker>>,
    source: &S,
    cache: Option<&Cache>,
) -> (Mode, Result<Collected, SyncError>, CacheUpdate) {
    let mut worker = match worker {
        Some(w) => Some(w.lock().await),
        None => None,
    };
    let mut in_process = InProcess(&config.mappings);
    let mut in_worker;
    let mapper: &mut dyn ItemMapper = match worker.as_deref_mut() {
        Some(w) => {
            in_worker = InWorker::new(w);
            &mut in_worker
        }
        None => &mut in_process,
    };
    let request = reconcile::list_request(config);
    let remapped = match (mode, cache) {
        (Mode::Remap, Some(cache)) => cache.covering(&request),
        _ => None,
    };
    if let Some((report, raw)) = remapped {
        info!(items = raw.len(), "re-mapping cached items; no listing");
        let collected = reconcile::remap(&config.mappings, mapper, &report, &raw);
        return (
            Mode::Remap,
            collected.map_err(Into::into),
            CacheUpdate::Keep,
        );
    }
    if mode == Mode::Remap {
        info!("the cache does not cover the new mappings; listing again");
    }
    let limit = config.watch_cache_limit_mib.saturating_mul(1024 * 1024);
    let listed = reconcile::collect_with(config, source, Some(limit), &NoProgress, mapper).await;
    let mut collected = match listed {
        Ok(c) => c,
        Err(e) => return (Mode::Full, Err(e.into()), CacheUpdate::Replace(None)),
    };
    let cache = match Cache::keep(request, &mut collected, limit) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(bytes) => {
            warn!(
                bytes,
                limit_mib = config.watch_cache_limit_mib,
                "raw items exceed watch.cacheLimitMiB; mapping edits will list again"
            );
            None
        }
    };
    (Mode::Full, Ok(collected), CacheUpdate::Replace(cache))
}

/// Shared between a sync and shutdown: the sync raises `applying` while it writes; shutdown
/// raises `stop`, and the apply ends after the writes in flight.
#[derive(Debug, Default)]
pub struct ApplyControl {
    applying: AtomicBool,
    stop: AtomicBool,
}

impl ApplyControl {
    /// Asks the apply to stop, and says whether one is running (then shutdown waits for it).
    pub fn stop(&self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.applying.load(Ordering::SeqCst)
    }
}

impl Progress for ApplyControl {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// An item as mapping errors name it: account, region, kind and identifier.
pub type ItemRef = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The items that failed to map in `collected`.
pub fn failing_items(collected: &Collected) -> BTreeSet<ItemRef> {
    collected.mapping_errors.iter().map(item_ref).collect()
}

fn item_ref(e: &Issue) -> ItemRef {
    (
        e.account.clone(),
        e.region.clone(),
        e.kind.clone(),
        e.item.clone(),
    )
}

/// Logs mapping errors at warn level once per (expression, message), with how many items it hit
/// and the first of them: a broken expression fails every item of its kind alike. Messages
/// begin with the expression's `file:line:col`.
fn log_mapping_errors(errors: &[Issue]) {
    let mut groups: BTreeMap<&str, (usize, &Issue)> = BTreeMap::new();
    for e in errors {
        groups.entry(&e.message).or_insert((0, e)).0 += 1;
    }
    for (message, (count, first)) in groups {
        warn!(
            items = count,
            first_item = first.item.as_deref().unwrap_or_default(),
            account = first.account.as_deref().unwrap_or_default(),
            region = first.region.as_deref().unwrap_or_default(),
            kind = first.kind.as_deref().unwrap_or_default(),
            "mapping error: {message}"
        );
    }
}

/// Why a candidate's mappings may not replace the running ones: they fail items that the
/// running mappings mapped in their last sync (`baseline` holds the items that failed then).
fn regressions(collected: &Collected, baseline: &BTreeSet<ItemRef>) -> Option<String> {
    let new: Vec<&Issue> = collected
        .mapping_errors
        .iter()
        .filter(|e| !baseline.contains(&item_ref(e)))
        .collect();
    let first = new.first()?;
    Some(format!(
        "the new mappings fail {} {} that the running mappings map; first: {} (item {} of {} in account {}, {})",
        new.len(),
        if new.len() == 1 { "item" } else { "items" },
        first.message,
        first.item.as_deref().unwrap_or("?"),
        first.kind.as_deref().unwrap_or("?"),
        first.account.as_deref().unwrap_or("?"),
        first.region.as_deref().unwrap_or("?"),
    ))
}

/// Runs one sync, mapping in `worker` when there is one. `control` lets shutdown stop the apply
/// between batches. `baseline`, for a candidate config, holds the items that failed to map under
/// the running config: a candidate that fails any other item is refused before anything is
/// planned.
#[allow(clippy::too_many_arguments)] // #16 gathers these into one engine pass.
pub async fn sync<S: Source, C: Catalog>(
    mode: Mode,
    config: &Config,
    worker: Option<&tokio::sync::Mutex<Worker>>,
    source: &S,
    catalog: &C,
    cache: Option<&Cache>,
    control: &ApplyControl,
    baseline: Option<&BTreeSet<ItemRef>>,
) -> SyncRun {
    let done = |mode: Mode, result: Result<Synced, SyncError>, cache: CacheUpdate| SyncRun {
        mode,
        result,
        cache,
    };
    let started = std::time::Instant::now();
    let (mode, gathered, update) = gather(mode, config, worker, source, cache).await;
    let mut collected = match gathered {
        Ok(collected) => collected,
        Err(e) => return done(mode, Err(e), update),
    };
    collected.raw = None;
    log_mapping_errors(&collected.mapping_errors);
    if let Some(why) = baseline.and_then(|b| regressions(&collected, b)) {
        return done(mode, Err(SyncError::Regressed(why)), update);
    }
    let mapped = started.elapsed();
    // Checked after the listing, which then overlaps shard 0's (shard 0 creates the blueprints
    // when it applies); what was listed is kept for the retry like any listing.
    if !config.shard.is_none_or(|s| s.bootstraps_blueprints()) {
        match reconcile::blueprints_ready(config, catalog).await {
            Ok(true) => {}
            Ok(false) => return done(mode, Err(SyncError::WaitingForBlueprints), update),
            Err(e) => return done(mode, Err(e.into()), update),
        }
    }
    let plan = match reconcile::plan(config, &collected, catalog, &PlanOptions::default()).await {
        Ok(plan) => plan,
        Err(e) => return done(mode, Err(e.into()), update),
    };
    for a in plan.accounts.iter().filter(|a| a.error.is_some()) {
        warn!(account = %a.id, status = ?a.status, error = a.error.as_deref().unwrap_or_default(), "account incomplete");
    }
    for s in &plan.scopes {
        warn!(account = %s.account, region = %s.region, kind = %s.kind, error = s.error.as_deref().unwrap_or_default(), "listing failed");
    }
    for w in &plan.withheld {
        warn!(blueprint = %w.blueprint, identifier = %w.identifier, reason = ?w.reason, "delete withheld");
    }
    let planned = started.elapsed();
    let report = if plan.has_changes() {
        // Raised before the stop is checked, so a shutdown either sees the apply or stops it.
        control.applying.store(true, Ordering::SeqCst);
        let report =
            reconcile::apply(catalog, &config.integration.identifier, &plan, control).await;
        control.applying.store(false, Ordering::SeqCst);
        for r in &report.rejected {
            warn!(action = %r.action, key = %r.key, message = %r.message, "write rejected");
        }
        if let Some(stopped) = &report.stopped {
            return done(mode, Err(SyncError::Stopped(stopped.clone())), update);
        }
        Some(report)
    } else {
        None
    };
    let s = &plan.summary;
    info!(
        mode = mode.as_str(),
        create = s.create,
        update = s.update,
        delete = s.delete,
        unchanged = s.unchanged,
        withheld = s.withheld,
        mapping_errors = plan.mapping_errors.len(),
        list_map_ms = mapped.as_millis() as u64,
        plan_ms = (planned - mapped).as_millis() as u64,
        apply_ms = (started.elapsed() - planned).as_millis() as u64,
        "sync done"
    );
    done(
        mode,
        Ok(Synced {
            collected,
            plan,
            report,
        }),
        update,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::RegionPolicy;
    use crate::source::{Discovery, Listing, Regions};

    fn spec(kind: &str, model: Option<serde_json::Value>) -> KindSpec {
        KindSpec {
            kind: kind.into(),
            region_policy: RegionPolicy::default(),
            use_get_resource_api: false,
            resource_model: model,
            models_from: None,
        }
    }

    fn cache(kinds: Vec<KindSpec>) -> Cache {
        let listing = |kind: &str, model: Option<&str>| Listing {
            account: "222222222222".into(),
            region: "us-east-1".into(),
            kind: kind.into(),
            model: model.map(str::to_string),
            error: None,
            unavailable: false,
        };
        Cache {
            request: ListRequest {
                kinds,
                regions: Regions::Enabled,
            },
            report: SourceReport {
                discovery: Discovery::ok(),
                accounts: Vec::new(),
                listings: vec![
                    listing("AWS::EKS::Nodegroup", Some(r#"{"ClusterName":"blue"}"#)),
                    listing("AWS::EKS::Nodegroup", Some(r#"{"ClusterName":"green"}"#)),
                    listing("AWS::SQS::Queue", None),
                ],
            },
            raw: Vec::new(),
            bytes: 0,
        }
    }

    #[test]
    fn a_cache_covers_a_kind_only_when_it_is_listed_with_the_same_resource_models() {
        let blue = spec("AWS::EKS::Nodegroup", Some(json!({"ClusterName": "blue"})));
        let green = spec("AWS::EKS::Nodegroup", Some(json!({"ClusterName": "green"})));
        let queue = spec("AWS::SQS::Queue", None);
        let cached = cache(vec![blue.clone(), green.clone(), queue.clone()]);
        let request = |kinds: Vec<KindSpec>| ListRequest {
            kinds,
            regions: Regions::Enabled,
        };
        // Same models in another order: covered, with both models' listings.
        let (report, _) = cached
            .covering(&request(vec![queue.clone(), green.clone(), blue.clone()]))
            .expect("covered");
        assert_eq!(report.listings.len(), 3);
        // A model dropped or added changes the kind's items and scopes: list again.
        assert!(
            cached
                .covering(&request(vec![blue.clone(), queue.clone()]))
                .is_none()
        );
        let other = spec("AWS::EKS::Nodegroup", Some(json!({"ClusterName": "red"})));
        assert!(
            cached
                .covering(&request(vec![blue, green, other, queue.clone()]))
                .is_none()
        );
        // Dropping a whole kind is covered: its listings go with it.
        let (report, _) = cached.covering(&request(vec![queue])).expect("covered");
        assert_eq!(report.listings.len(), 1);
    }
}
