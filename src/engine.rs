//! One reconcile pass: list → map → read the catalog → plan → apply. The planning itself is pure
//! ([`plan::plan`]); this module only gathers its inputs from a [`Source`] and a [`Catalog`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::core::writes::{ApplyReport, Progress};

use crate::adapters::{Catalog, CatalogError};
use crate::adapters::{ItemSink, Source, SourceError};
use crate::config::Config;
use crate::core::mapping::{ItemOutcome, Mappings};
use crate::core::model::{
    ACCOUNT_INFO_KIND, Blueprint, Desired, EntityKey, GLOBAL_REGION, Origin, OwnedEntity, RawItem,
};
use crate::core::reconcile::{Issue, MassDelete, Plan, plan, search};
use crate::core::report::{AccountReport, ListRequest, SourceReport};
use crate::core::shard::Shard;
use crate::sandbox::worker::{Batch, Worker};

/// What listing and mapping produced.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub report: Option<SourceReport>,
    pub desired: Vec<Desired>,
    pub mapping_errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Items listed per kind (account items included).
    pub listed: BTreeMap<String, usize>,
    /// The redacted raw items, when asked for (the watch cache, snapshots).
    pub raw: Option<Vec<RawItem>>,
    /// Approximate size of the raw items kept, or, once `raw_overflowed`, of those seen until the
    /// limit was passed.
    pub raw_bytes: usize,
    /// The raw items passed the size limit during the listing and were dropped.
    pub raw_overflowed: bool,
}

impl Collected {
    /// Keeps `item` while the raw items stay within `limit_bytes`. The first item past it drops
    /// them all, so memory is freed during the listing instead of after it.
    fn keep_raw(&mut self, item: RawItem, limit_bytes: u64) {
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        self.raw_bytes += item.approx_size();
        if self.raw_bytes as u64 > limit_bytes {
            self.raw = None;
            self.raw_overflowed = true;
        } else {
            raw.push(item);
        }
    }

    /// Records what mapping one item gave.
    pub fn record(&mut self, origin: Origin, outcome: ItemOutcome) {
        *self.listed.entry(origin.kind.clone()).or_default() += 1;
        let issue = |message: String| Issue {
            account: Some(origin.account.clone()),
            region: Some(origin.region.clone()),
            kind: Some(origin.kind.clone()),
            item: Some(origin.item.clone()),
            message,
        };
        self.warnings
            .extend(outcome.warnings.into_iter().map(issue));
        self.mapping_errors
            .extend(outcome.errors.into_iter().map(issue));
        self.desired
            .extend(outcome.entities.into_iter().map(|m| Desired {
                entity: m.entity,
                origin: origin.clone(),
                write: m.write,
            }));
    }
}

/// Where an item's entities come from.
pub fn origin_of(item: &RawItem) -> Origin {
    Origin {
        account: item.account.clone(),
        kind: item.kind.clone(),
        region: item.region.clone(),
        item: item.identifier.clone(),
    }
}

/// Mapping stopped before every item was mapped (the daemon's mapping worker ran past the time
/// limit or died); nothing collected may be planned.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MappingStopped(pub String);

/// Maps items as they are listed, into a [`Collected`]: in this process ([`InProcess`]) or in
/// a worker process ([`InWorker`](crate::engine::InWorker)), which may answer only when [`finish`](ItemMapper::finish)ed.
pub trait ItemMapper: Send {
    fn map(&mut self, item: &RawItem, into: &mut Collected);
    /// Maps a batch (a page of a listing, the cached items); outcomes are recorded in order.
    fn map_batch(&mut self, items: &[RawItem], into: &mut Collected) {
        for item in items {
            self.map(item, into);
        }
    }
    fn finish(&mut self, into: &mut Collected) -> Result<(), MappingStopped>;
}

/// Maps in this process, at once.
pub struct InProcess<'m>(pub &'m Mappings);

impl ItemMapper for InProcess<'_> {
    fn map(&mut self, item: &RawItem, into: &mut Collected) {
        into.record(origin_of(item), self.0.map_item(item));
    }

    /// On every core ([`crate::parallel::map_items`]).
    fn map_batch(&mut self, items: &[RawItem], into: &mut Collected) {
        for (item, outcome) in items.iter().zip(crate::parallel::map_items(self.0, items)) {
            into.record(origin_of(item), outcome);
        }
    }

    fn finish(&mut self, _into: &mut Collected) -> Result<(), MappingStopped> {
        Ok(())
    }
}

/// Why [`collect_with`] gave nothing to plan.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Mapping(#[from] MappingStopped),
}

/// What to list for `config`'s mappings.
pub fn list_request(config: &Config) -> ListRequest {
    ListRequest {
        kinds: config
            .mappings
            .kinds()
            .into_iter()
            .filter(|k| k.kind != ACCOUNT_INFO_KIND)
            .collect(),
        regions: config.source.regions(),
    }
}

/// The synthetic `AWS::Account::Info` items, from discovery data.
pub fn account_items(accounts: &[AccountReport]) -> Vec<RawItem> {
    accounts
        .iter()
        .map(|a| {
            let mut props = Map::new();
            props.insert("Id".into(), Json::String(a.id.clone()));
            props.insert(
                "Name".into(),
                Json::String(a.name.clone().unwrap_or_else(|| a.id.clone())),
            );
            for (key, value) in [("Email", &a.email), ("Status", &a.status), ("Arn", &a.arn)] {
                if let Some(v) = value {
                    props.insert(key.into(), Json::String(v.clone()));
                }
            }
            RawItem {
                account: a.id.clone(),
                account_name: a.name.clone(),
                region: GLOBAL_REGION.into(),
                kind: ACCOUNT_INFO_KIND.into(),
                identifier: a.id.clone(),
                model: None,
                properties: Json::Object(props),
            }
        })
        .collect()
}

/// Lists every needed scope, redacting and mapping items in this process as pages arrive.
pub async fn collect<S: Source>(
    config: &Config,
    source: &S,
    keep_raw: bool,
    progress: &dyn Progress,
) -> Result<Collected, CollectError> {
    let mut mapper = InProcess(&config.mappings);
    let keep = keep_raw.then_some(u64::MAX);
    collect_with(config, source, keep, progress, &mut mapper).await
}

/// [`collect`] with the mapping done by `mapper`, keeping the raw items only while their
/// approximate size stays within `raw_limit_bytes` (`None`: keep none). Past the limit they are
/// dropped at once and [`Collected::raw_overflowed`] is set.
pub async fn collect_with<S: Source>(
    config: &Config,
    source: &S,
    raw_limit_bytes: Option<u64>,
    progress: &dyn Progress,
    mapper: &mut dyn ItemMapper,
) -> Result<Collected, CollectError> {
    let request = list_request(config);
    let limit = raw_limit_bytes.unwrap_or(0);
    let mut collected = Collected {
        raw: raw_limit_bytes.map(|_| Vec::new()),
        ..Default::default()
    };
    let report = {
        let mut sink = |items: Vec<RawItem>| {
            progress.advance(items.len() as u64);
            let mut items = items;
            for item in &mut items {
                config.redactor.redact(item);
            }
            mapper.map_batch(&items, &mut collected);
            for item in items {
                collected.keep_raw(item, limit);
            }
        };
        source
            .list(&request, &mut sink as &mut dyn ItemSink)
            .await?
    };
    let wants_accounts = config
        .mappings
        .kinds()
        .iter()
        .any(|k| k.kind == ACCOUNT_INFO_KIND);
    if wants_accounts {
        for item in account_items(&report.accounts) {
            mapper.map(&item, &mut collected);
        }
    }
    mapper.finish(&mut collected)?;
    collected.report = Some(report);
    Ok(collected)
}

/// Re-maps cached raw items with (possibly new) mappings: the watch fast path.
pub fn remap(
    mappings: &Mappings,
    mapper: &mut dyn ItemMapper,
    report: &SourceReport,
    raw: &[RawItem],
) -> Result<Collected, MappingStopped> {
    let mut collected = Collected::default();
    mapper.map_batch(raw, &mut collected);
    if mappings.kinds().iter().any(|k| k.kind == ACCOUNT_INFO_KIND) {
        for item in account_items(&report.accounts) {
            mapper.map(&item, &mut collected);
        }
    }
    mapper.finish(&mut collected)?;
    collected.report = Some(report.clone());
    Ok(collected)
}

/// `plan`/`apply` flags that change the plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanOptions {
    pub allow_mass_delete: MassDelete,
    pub adopt: bool,
}

/// Reads the catalog and computes the plan for what was collected.
pub async fn plan<C: Catalog>(
    config: &Config,
    collected: &Collected,
    catalog: &C,
    options: &PlanOptions,
) -> Result<Plan, CatalogError> {
    let empty = SourceReport {
        discovery: crate::core::report::Discovery::ok(),
        accounts: Vec::new(),
        listings: Vec::new(),
    };
    let report = collected.report.as_ref().unwrap_or(&empty);
    let owner = &config.integration.identifier;
    let accounts: Vec<String> = report.accounts.iter().map(|a| a.id.clone()).collect();
    let catalog_blueprints = catalog.blueprints().await?;
    let (desired, unknown_blueprints) =
        plan::known_blueprints_only(&collected.desired, &config.blueprints, &catalog_blueprints);
    let mut mapping_errors = collected.mapping_errors.clone();
    mapping_errors.extend(unknown_blueprints);
    let mut warnings = collected.warnings.clone();
    let desired = resolve_searches(
        desired,
        config,
        &catalog_blueprints,
        catalog,
        &mut warnings,
        &mut mapping_errors,
    )
    .await?;
    let owned = of_shard(
        config.shard.as_ref(),
        catalog.owned(owner, &accounts).await?,
    );
    let owned_keys: BTreeSet<EntityKey> = owned.iter().map(|o| o.entity.key()).collect();
    let desired_keys: BTreeSet<EntityKey> = desired.iter().map(|d| d.entity.key()).collect();
    let new_keys: Vec<EntityKey> = desired_keys.difference(&owned_keys).cloned().collect();
    let foreign = if new_keys.is_empty() {
        Vec::new()
    } else {
        catalog.foreign(owner, &new_keys).await?
    };
    let gone_keys: Vec<EntityKey> = owned_keys.difference(&desired_keys).cloned().collect();
    let foreign_references = if gone_keys.is_empty() {
        Vec::new()
    } else {
        catalog.foreign_references(owner, &gone_keys).await?
    };
    let producible = config
        .mappings
        .kinds()
        .into_iter()
        .map(|k| {
            let p = config.mappings.producible_blueprints(&k.kind);
            (k.kind, p)
        })
        .collect();
    let mut plan = plan::plan(plan::PlanInput {
        integration: owner,
        adopt_prefixes: &config.integration.adopt,
        adopt_all: options.adopt,
        allow_mass_delete: options.allow_mass_delete.clone(),
        catalog: catalog.describe(),
        config_hash: config.hash.clone(),
        desired: &desired,
        owned,
        foreign,
        foreign_references,
        report,
        mapping_errors,
        warnings,
        producible,
        threshold: config.mappings.deletion_threshold(),
        desired_blueprints: &config.blueprints,
        catalog_blueprints: &catalog_blueprints,
    });
    plan.shard = config.shard;
    if !config.shard.is_none_or(|s| s.bootstraps_blueprints()) {
        // Only shard 0 writes blueprints; the others wait for them (`blueprints_ready`).
        plan.blueprints.clear();
    }
    Ok(plan)
}

/// The owned entities a shard answers for: those of its own accounts, gone or not (an account's
/// shard is a function of its id, so exactly one shard may prove it gone). An entity whose
/// account cannot be determined is left to no shard: any of them could be another shard's, and
/// tidemark deletes nothing without proof (README, "Sharding").
fn of_shard(shard: Option<&Shard>, owned: Vec<OwnedEntity>) -> Vec<OwnedEntity> {
    let Some(shard) = shard else {
        return owned;
    };
    owned
        .into_iter()
        .filter(|o| o.account.as_deref().is_some_and(|a| shard.owns(a)))
        .collect()
}

/// Whether the catalog has every blueprint, property and relation that `apply` would add: what a
/// shard other than 0 waits for before it writes entities.
pub async fn blueprints_ready<C: Catalog>(
    config: &Config,
    catalog: &C,
) -> Result<bool, CatalogError> {
    let catalog_blueprints = catalog.blueprints().await?;
    Ok(plan::blueprint_plan(&config.blueprints, &catalog_blueprints).is_empty())
}

/// Runs the searches that search relations ask for and puts what they found in place of the
/// queries (see [`search`]). Without search relations it costs nothing and copies nothing.
async fn resolve_searches<'d, C: Catalog>(
    desired: std::borrow::Cow<'d, [Desired]>,
    config: &Config,
    catalog_blueprints: &[Blueprint],
    catalog: &C,
    warnings: &mut Vec<Issue>,
    mapping_errors: &mut Vec<Issue>,
) -> Result<std::borrow::Cow<'d, [Desired]>, CatalogError> {
    // The definitions `apply` writes win over what the catalog has, as in the plan.
    let mut blueprints: Vec<Blueprint> = config.blueprints.clone();
    blueprints.extend(
        catalog_blueprints
            .iter()
            .filter(|c| !config.defines_blueprint(c.identifier()))
            .cloned(),
    );
    let requests = search::requests(&desired, &blueprints);
    if requests.is_empty() {
        return Ok(desired);
    }
    let mut found = BTreeMap::new();
    for request in requests {
        let ids = catalog.search(&request.blueprint, &request.query()).await?;
        found.insert(request, ids);
    }
    let resolved = search::resolve(desired.into_owned(), &blueprints, &found);
    warnings.extend(resolved.warnings);
    mapping_errors.extend(resolved.errors);
    Ok(std::borrow::Cow::Owned(resolved.desired))
}

/// Why a saved plan may no longer be applied.
#[derive(Debug, thiserror::Error)]
pub enum StalePlan {
    #[error("the plan was made for {planned}, but the configured catalog is {current}")]
    Catalog { planned: String, current: String },
    #[error("the config or mappings changed since the plan was made")]
    Config,
    #[error("the plan was made by shard {planned}, but this is shard {current}")]
    Shard { planned: String, current: String },
    #[error("the owned entities of account {account} changed since the plan was made")]
    Account { account: String },
    #[error("{key} now exists under another owner; plan again")]
    Foreign { key: EntityKey },
    #[error("the catalog's blueprints changed since the plan was made")]
    Blueprints,
    #[error("the plan has format_version {0:?}; this tidemark applies \"1\"")]
    Format(String),
    #[error(transparent)]
    Read(#[from] CatalogError),
}

fn shard_name(shard: Option<&Shard>) -> String {
    shard.map_or_else(|| "none (every account)".to_string(), Shard::to_string)
}

/// Checks that `plan` still describes the catalog (AWS is not listed again).
pub async fn check_fresh<C: Catalog>(
    config: &Config,
    catalog: &C,
    plan: &Plan,
) -> Result<(), StalePlan> {
    if plan.format_version != plan::FORMAT_VERSION {
        return Err(StalePlan::Format(plan.format_version.clone()));
    }
    if plan.basis.catalog != catalog.describe() {
        return Err(StalePlan::Catalog {
            planned: plan.basis.catalog.clone(),
            current: catalog.describe(),
        });
    }
    if plan.basis.config_hash != config.hash {
        return Err(StalePlan::Config);
    }
    if plan.shard != config.shard {
        return Err(StalePlan::Shard {
            planned: shard_name(plan.shard.as_ref()),
            current: shard_name(config.shard.as_ref()),
        });
    }
    let accounts: Vec<String> = plan.accounts.iter().map(|a| a.id.clone()).collect();
    let owned = of_shard(
        config.shard.as_ref(),
        catalog
            .owned(&config.integration.identifier, &accounts)
            .await?,
    );
    let now = plan::owned_hashes(&owned);
    let all: BTreeSet<&String> = now.keys().chain(plan.basis.accounts.keys()).collect();
    for account in all {
        if now.get(account) != plan.basis.accounts.get(account) {
            return Err(StalePlan::Account {
                account: account.clone(),
            });
        }
    }
    let creates: Vec<EntityKey> = plan
        .changes
        .iter()
        .filter(|c| c.action == plan::Action::Create)
        .map(|c| c.key())
        .collect();
    if !creates.is_empty()
        && let Some(f) = catalog
            .foreign(&config.integration.identifier, &creates)
            .await?
            .first()
    {
        return Err(StalePlan::Foreign {
            key: f.entity.key(),
        });
    }
    let catalog_blueprints = catalog.blueprints().await?;
    let mut blueprints = plan::blueprint_plan(&config.blueprints, &catalog_blueprints);
    if !config.shard.is_none_or(|s| s.bootstraps_blueprints()) {
        blueprints.clear();
    }
    if blueprints != plan.blueprints {
        return Err(StalePlan::Blueprints);
    }
    Ok(())
}

/// Applies a plan's writes.
pub async fn apply<C: Catalog>(
    catalog: &C,
    owner: &str,
    plan: &Plan,
    progress: &dyn Progress,
) -> ApplyReport {
    catalog.apply(owner, &plan.writes(), progress).await
}

pub struct InWorker<'w> {
    batch: Option<Batch<'w>>,
    origins: Vec<Origin>,
}

impl<'w> InWorker<'w> {
    pub fn new(worker: &'w mut Worker) -> InWorker<'w> {
        InWorker {
            batch: Some(worker.batch()),
            origins: Vec::new(),
        }
    }
}

impl ItemMapper for InWorker<'_> {
    fn map(&mut self, item: &RawItem, _into: &mut Collected) {
        if let Some(batch) = self.batch.as_mut() {
            batch.send(item);
            self.origins.push(origin_of(item));
        }
    }

    fn finish(&mut self, into: &mut Collected) -> Result<(), MappingStopped> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let origins = &self.origins;
        let describe = |i: usize| origins.get(i).map_or("an item".to_owned(), Origin::label);
        let outcomes = batch
            .finish(describe)
            .map_err(|e| MappingStopped(e.to_string()))?;
        if outcomes.len() != self.origins.len() {
            return Err(MappingStopped(format!(
                "the mapping worker answered {} of {} items",
                outcomes.len(),
                self.origins.len()
            )));
        }
        for (origin, outcome) in self.origins.drain(..).zip(outcomes) {
            into.record(origin, outcome);
        }
        Ok(())
    }
}

/// Where a pass's items come from.
pub enum Items<'a, S> {
    /// Listed from `source` now, keeping the redacted raw items while they stay within
    /// `keep_raw` bytes (`None`: keep none), with `progress` advanced per page.
    Listed {
        source: &'a S,
        keep_raw: Option<u64>,
        progress: &'a dyn Progress,
    },
    /// Kept from an earlier listing and mapped again (the watch's re-map after a mapping edit).
    Cached {
        report: &'a SourceReport,
        raw: &'a [RawItem],
    },
}

/// Where items are mapped: here, or in the sandbox's worker child, where a runaway or
/// crashing expression ends the child and the error names the item.
pub enum Mapper<'w> {
    InProcess,
    Sandbox(&'w mut Worker),
}

/// What the caller decides between the steps of a pass.
pub trait Steps: Send {
    /// Called once items are mapped, before the catalog is read; an error ends the pass with
    /// nothing planned (the watch's regression gate). May take the raw items out.
    fn mapped(&mut self, _collected: &mut Collected) -> Result<(), String> {
        Ok(())
    }

    /// Called once when this shard starts waiting for shard 0 to create the blueprints.
    fn waiting_for_blueprints(&mut self, _shard: &Shard) {}

    /// Called with the plan; `Some(progress)` applies its changes with that progress.
    fn planned(&mut self, _plan: &Plan) -> Option<&dyn Progress> {
        None
    }
}

/// Plans and applies nothing beyond the plan.
pub struct PlanOnly;

impl Steps for PlanOnly {}

/// One pass: items → map → read the catalog → plan → apply if the caller asks.
pub struct Pass<'a, S, C> {
    pub config: &'a Config,
    pub items: Items<'a, S>,
    pub mapper: Mapper<'a>,
    pub catalog: &'a C,
    pub options: PlanOptions,
    /// On a shard other than 0, how long to wait after mapping for shard 0 to create the
    /// blueprints before planning (`None`: plan without them, as `plan` does).
    pub await_blueprints: Option<std::time::Duration>,
}

/// How often a shard asks whether the blueprints exist yet.
const BLUEPRINT_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// What a pass did: what it mapped, the plan, and the apply's report when it applied.
pub struct Ran {
    pub collected: Collected,
    pub plan: Plan,
    pub applied: Option<ApplyReport>,
    /// Time spent listing and mapping, then planning.
    pub mapped_in: std::time::Duration,
    pub planned_in: std::time::Duration,
}

/// Why a pass ended before its plan.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// The caller's [`Steps::mapped`] refused what was mapped.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// This shard is not shard 0 and the catalog still lacks blueprints that shard 0 creates.
    #[error(
        "shard {shard}: the catalog still lacks blueprints after {}s; shard 0 creates them (run it, or apply without --shard once)",
        waited.as_secs()
    )]
    NoBlueprints {
        shard: Shard,
        waited: std::time::Duration,
    },
}

/// Waits, on a shard other than 0, until the catalog has every blueprint, property and relation
/// the mappings need, for at most `patience` (zero: asks once). Checked after the listing, which
/// then overlaps shard 0's own (shard 0 creates the blueprints when it applies).
pub async fn await_blueprints<C: Catalog>(
    config: &Config,
    catalog: &C,
    patience: std::time::Duration,
    steps: &mut dyn Steps,
) -> Result<(), PassError> {
    let Some(shard) = config.shard.filter(|s| !s.bootstraps_blueprints()) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut said = false;
    while !blueprints_ready(config, catalog).await? {
        if started.elapsed() >= patience {
            return Err(PassError::NoBlueprints {
                shard,
                waited: patience,
            });
        }
        if !said {
            steps.waiting_for_blueprints(&shard);
            said = true;
        }
        tokio::time::sleep(BLUEPRINT_POLL).await;
    }
    Ok(())
}

/// Runs one pass. `plan`, `apply` and the watch's sync all run through here; `map` uses its
/// mapping step ([`map_items`]).
pub async fn run<S: Source, C: Catalog>(
    pass: Pass<'_, S, C>,
    steps: &mut dyn Steps,
) -> Result<Ran, PassError> {
    let started = std::time::Instant::now();
    let Pass {
        config,
        items,
        mut mapper,
        catalog,
        options,
        await_blueprints: patience,
    } = pass;
    let mut in_process = InProcess(&config.mappings);
    let mut in_worker;
    let item_mapper: &mut dyn ItemMapper = match &mut mapper {
        Mapper::Sandbox(worker) => {
            in_worker = InWorker::new(worker);
            &mut in_worker
        }
        Mapper::InProcess => &mut in_process,
    };
    let mut collected = match items {
        Items::Listed {
            source,
            keep_raw,
            progress,
        } => {
            let collected = collect_with(config, source, keep_raw, progress, item_mapper).await;
            progress.finish();
            collected?
        }
        Items::Cached { report, raw } => {
            remap(&config.mappings, item_mapper, report, raw).map_err(CollectError::Mapping)?
        }
    };
    steps.mapped(&mut collected).map_err(PassError::Refused)?;
    let mapped_in = started.elapsed();
    if let Some(patience) = patience {
        await_blueprints(config, catalog, patience, steps).await?;
    }
    let plan = plan(config, &collected, catalog, &options).await?;
    let planned_in = started.elapsed();
    let applied = match steps.planned(&plan) {
        Some(progress) if plan.has_changes() => {
            progress.applying(true);
            let report = apply(catalog, &config.integration.identifier, &plan, progress).await;
            progress.applying(false);
            Some(report)
        }
        _ => None,
    };
    Ok(Ran {
        collected,
        plan,
        applied,
        mapped_in,
        planned_in,
    })
}

/// Maps `items` as a pass does, here or in the sandbox's worker child, in input order: the
/// mapping step `map` shares with [`run`].
pub fn map_items(
    mappings: &Mappings,
    mapper: &mut Mapper<'_>,
    items: &[RawItem],
) -> Result<Vec<ItemOutcome>, String> {
    match mapper {
        Mapper::Sandbox(worker) => worker.map_items(items).map_err(|e| e.to_string()),
        Mapper::InProcess => Ok(crate::parallel::map_items(mappings, items)),
    }
}
