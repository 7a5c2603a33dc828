//! One daemon sync: a full listing, or a re-map of the cached raw items, then plan and apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use crate::adapters::{Catalog, CatalogError};
use crate::adapters::{Source, SourceError};
use crate::config::Config;
use crate::core::model::{KindSpec, RawItem};
use crate::core::reconcile::{Issue, Plan};
use crate::core::report::{ListRequest, SourceReport};
use crate::core::writes::{ApplyReport, NoProgress, Progress};
use crate::engine::{
    self, CollectError, Collected, Items, Mapper, MappingStopped, Pass, PassError, PlanOptions,
    Ran, Steps,
};
use crate::sandbox::worker::Worker;

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

impl From<PassError> for SyncError {
    fn from(e: PassError) -> SyncError {
        match e {
            PassError::Collect(e) => e.into(),
            PassError::Refused(why) => SyncError::Regressed(why),
            PassError::Catalog(e) => SyncError::Catalog(e),
            PassError::NoBlueprints { .. } => SyncError::WaitingForBlueprints,
        }
    }
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
    fn applying(&self, on: bool) {
        // Raised before the stop is checked, so a shutdown either sees the apply or stops it.
        self.applying.store(on, Ordering::SeqCst);
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

/// The watch's steps of a pass: after mapping, keep the raw items for the next re-map, log the
/// mapping errors and refuse a candidate that regresses; after planning, log what is incomplete
/// and apply under shutdown's control.
struct SyncSteps<'a> {
    /// What was listed, when the pass lists: the cache is kept for it.
    listed: Option<ListRequest>,
    limit_mib: u64,
    cache: CacheUpdate,
    baseline: Option<&'a BTreeSet<ItemRef>>,
    control: &'a ApplyControl,
}

impl Steps for SyncSteps<'_> {
    fn mapped(&mut self, collected: &mut Collected) -> Result<(), String> {
        if let Some(request) = self.listed.take() {
            let limit = self.limit_mib.saturating_mul(1024 * 1024);
            self.cache = match Cache::keep(request, collected, limit) {
                Ok(cache) => CacheUpdate::Replace(Some(Arc::new(cache))),
                Err(bytes) => {
                    warn!(
                        bytes,
                        limit_mib = self.limit_mib,
                        "raw items exceed watch.cacheLimitMiB; mapping edits will list again"
                    );
                    CacheUpdate::Replace(None)
                }
            };
        }
        collected.raw = None;
        log_mapping_errors(&collected.mapping_errors);
        match self.baseline.and_then(|b| regressions(collected, b)) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn planned(&mut self, plan: &Plan) -> Option<&dyn Progress> {
        for a in plan.accounts.iter().filter(|a| a.error.is_some()) {
            warn!(account = %a.id, status = ?a.status, error = a.error.as_deref().unwrap_or_default(), "account incomplete");
        }
        for s in &plan.scopes {
            warn!(account = %s.account, region = %s.region, kind = %s.kind, error = s.error.as_deref().unwrap_or_default(), "listing failed");
        }
        for w in &plan.withheld {
            warn!(blueprint = %w.blueprint, identifier = %w.identifier, reason = ?w.reason, "delete withheld");
        }
        Some(self.control)
    }
}

/// Runs one sync as an engine pass, mapping in `worker` when there is one. A re-map takes the
/// cached items when the cache covers the new mappings, and lists otherwise. `control` lets
/// shutdown stop the apply between batches. `baseline`, for a candidate config, holds the items
/// that failed to map under the running config: a candidate that fails any other item is
/// refused before anything is planned.
#[allow(clippy::too_many_arguments)]
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
    let mut worker = match worker {
        Some(w) => Some(w.lock().await),
        None => None,
    };
    let mapper = match worker.as_deref_mut() {
        Some(w) => Mapper::Sandbox(w),
        None => Mapper::InProcess,
    };
    let request = engine::list_request(config);
    let cached = match (mode, cache) {
        (Mode::Remap, Some(cache)) => cache.covering(&request),
        _ => None,
    };
    if mode == Mode::Remap && cached.is_none() {
        info!("the cache does not cover the new mappings; listing again");
    }
    let mode = if cached.is_some() {
        Mode::Remap
    } else {
        Mode::Full
    };
    let limit = config.watch_cache_limit_mib.saturating_mul(1024 * 1024);
    let items = match &cached {
        Some((report, raw)) => {
            info!(items = raw.len(), "re-mapping cached items; no listing");
            Items::Cached { report, raw }
        }
        None => Items::Listed {
            source,
            keep_raw: Some(limit),
            progress: &NoProgress,
        },
    };
    let mut steps = SyncSteps {
        listed: cached.is_none().then_some(request),
        limit_mib: config.watch_cache_limit_mib,
        cache: if cached.is_some() {
            CacheUpdate::Keep
        } else {
            CacheUpdate::Replace(None)
        },
        baseline,
        control,
    };
    let pass = Pass {
        config,
        items,
        mapper,
        catalog,
        options: PlanOptions::default(),
        // Asked once: the retry waits for them, and the daemon keeps serving meanwhile.
        await_blueprints: Some(std::time::Duration::ZERO),
    };
    let started = std::time::Instant::now();
    let ran = engine::run(pass, &mut steps).await;
    let result = ran
        .map_err(SyncError::from)
        .and_then(|ran| synced(ran, mode, started));
    SyncRun {
        mode,
        result,
        cache: steps.cache,
    }
}

/// A finished pass as the daemon records it: rejected writes logged, a stopped apply an error,
/// and the `sync done` line.
fn synced(ran: Ran, mode: Mode, started: std::time::Instant) -> Result<Synced, SyncError> {
    if let Some(report) = &ran.applied {
        for r in &report.rejected {
            warn!(action = %r.action, key = %r.key, message = %r.message, "write rejected");
        }
        if let Some(stopped) = &report.stopped {
            return Err(SyncError::Stopped(stopped.to_string()));
        }
    }
    let s = &ran.plan.summary;
    info!(
        mode = mode.as_str(),
        create = s.create,
        update = s.update,
        delete = s.delete,
        unchanged = s.unchanged,
        withheld = s.withheld,
        mapping_errors = ran.plan.mapping_errors.len(),
        list_map_ms = ran.mapped_in.as_millis() as u64,
        plan_ms = (ran.planned_in - ran.mapped_in).as_millis() as u64,
        apply_ms = (started.elapsed().saturating_sub(ran.planned_in)).as_millis() as u64,
        "sync done"
    );
    Ok(Synced {
        collected: ran.collected,
        plan: ran.plan,
        report: ran.applied,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::model::RegionPolicy;
    use crate::core::report::{Discovery, Listing, Regions};

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
