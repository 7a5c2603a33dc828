//! `tidemark watch`: the daemon. A full sync at start and every `resync.interval`, hot reload of
//! the config and mapping files, a re-map of cached raw items for mapping-only edits, and
//! `/healthz`, `/readyz`, `/metrics`.
//!
//! The run loop owns all state and is a `select!` over the shutdown future, debounced reload
//! signals, the running sync (a spawned task, at most one) and the scheduler's next deadline.
//! A reload swaps in a fully loaded and compiled config, or keeps the running one. New mappings
//! are first a candidate: the next sync maps with them, and they replace the running ones once
//! every item that sync listed (or took from the cache) mapped within the evaluation limit. Items
//! of scopes whose listing failed cannot be tried; if one of them loops once its scope recovers,
//! that sync fails and is retried, and the daemon keeps serving.
//!
//! With [`WatchOptions::map_worker`] set (the binary sets it), items are mapped in a child
//! process, so an expression that never ends costs a rejected reload or a failed sync instead of
//! the daemon.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

use crate::adapters::{AnyCatalog, AnySource};
use crate::adapters::{Catalog, CatalogError};
use crate::adapters::{Source, SourceError};
use crate::config::{self, Config, ProcessEnv};
use crate::core::shard::{Shard, ShardError};
use crate::core::yaml::Diagnostic;
use crate::sandbox::worker::{Children, Killer, Worker};
use metrics::{ReloadOutcome, SyncOutcome};

pub mod http;
pub mod metrics;
pub mod reload;
pub mod schedule;
pub mod sync;

pub use http::{Readiness, Shared};
pub use schedule::Mode;

use reload::{Change, FsWatcher, WatchSet};
use schedule::Scheduler;
use sync::{Cache, CacheUpdate, SyncError, SyncRun};

/// Editors write a file in several steps and Kubernetes swaps a ConfigMap in three renames; half a
/// second of quiet covers both without making an edit feel slow.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);
/// Kubernetes kills a pod 30 s after SIGTERM by default; finishing an apply must fit in that.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// The HTTP server gets this long to finish a scrape in progress at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub config_path: PathBuf,
    pub debounce: Duration,
    /// How long shutdown waits for an apply in progress.
    pub shutdown_grace: Duration,
    /// The `tidemark` executable that maps items in a child process (`tidemark __map-worker`).
    /// Without one, items are mapped in this process, where an item that runs past the
    /// evaluation limit ends the process, as in one-shot commands.
    pub map_worker: Option<PathBuf>,
    /// What configs are loaded with: the process environment and the mapping observer.
    pub env: ProcessEnv,
    /// `--shard`: wins over the config's `shard:`, in the initial config and every reload.
    pub shard: Option<Shard>,
    /// Every mapping worker's child joins these, for an exit on a second signal to end them.
    pub children: Children,
}

impl WatchOptions {
    pub fn new(config_path: impl Into<PathBuf>) -> WatchOptions {
        WatchOptions {
            config_path: config_path.into(),
            debounce: DEFAULT_DEBOUNCE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            map_worker: None,
            env: ProcessEnv::default(),
            shard: None,
            children: Children::default(),
        }
    }
}

/// Failures that stop the daemon (exit 1). Failed syncs and invalid reloads are not among them.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{}", join_diagnostics(.0))]
    Config(Vec<Diagnostic>),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    // The cause follows as the error's source (`{:#}` prints it once).
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch the config files: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// The diagnostics one per line; the first (an error) without its label, which the caller
/// prints before the whole message.
fn join_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics
        .iter()
        .enumerate()
        .map(|(i, d)| match i {
            0 => d.to_string(),
            _ => format!("{}: {d}", d.severity),
        })
        .collect();
    lines.join("\n")
}

/// Opens the source and catalog a config names. The binary uses [`Configured`]; tests wrap it
/// (to count listings, for instance).
pub trait Adapters: Send + Sync + 'static {
    type Source: Source + 'static;
    type Catalog: Catalog + 'static;
    fn open_source(
        &self,
        config: &Config,
    ) -> impl Future<Output = Result<Self::Source, SourceError>> + Send;
    fn open_catalog(&self, config: &Config) -> Result<Self::Catalog, CatalogError>;
}

/// The adapters the config names ([`AnySource`], [`AnyCatalog`]).
pub struct Configured;

impl Adapters for Configured {
    type Source = AnySource;
    type Catalog = AnyCatalog;

    async fn open_source(&self, config: &Config) -> Result<AnySource, SourceError> {
        AnySource::open(config).await
    }

    fn open_catalog(&self, config: &Config) -> Result<AnyCatalog, CatalogError> {
        AnyCatalog::open(config)
    }
}

/// Runs `tidemark watch` until `shutdown` resolves: binds `listen`, then [`run_with`] on the
/// configured adapters. An invalid initial config is an error (exit 1); after shutdown, `Ok`.
pub async fn run(
    options: WatchOptions,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    // The config is checked before binding, so a broken config is reported as such.
    let loaded = load_initial(&options)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| WatchError::Listen {
            addr: listen,
            source,
        })?;
    info!(address = %listen, "serving /healthz, /readyz and /metrics");
    if let Some(shard) = loaded.shard {
        info!(%shard, "syncing only this shard's accounts");
    }
    let shared = Arc::new(Shared::for_shard(loaded.shard));
    run_loaded(Configured, loaded, options, listener, shared, shutdown).await
}

/// Like [`run`], with the adapters, an already bound listener and the shared state given, so
/// tests can count source calls and read readiness and metrics directly.
pub async fn run_with<A: Adapters>(
    adapters: A,
    options: WatchOptions,
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let loaded = load_initial(&options)?;
    run_loaded(adapters, loaded, options, listener, shared, shutdown).await
}

fn load_initial(options: &WatchOptions) -> Result<Config, WatchError> {
    let (mut config, warnings) =
        config::load(&options.config_path, &options.env).map_err(WatchError::Config)?;
    for w in &warnings {
        warn!("{w}");
    }
    config.resolve_shard(options.shard, &options.env)?;
    Ok(config)
}

/// A sync in progress.
struct Running<S> {
    handle: JoinHandle<Finished<S>>,
    control: Arc<sync::ApplyControl>,
    /// Ends the child the sync maps in, if it maps in one.
    killer: Option<Killer>,
}

/// What a sync task hands back to the loop.
struct Finished<S> {
    run: SyncRun,
    /// The candidate the sync mapped with, if any.
    candidate: Option<u64>,
    source: Option<Arc<S>>,
    /// The `source` section hash of the config the sync ran with: what its source and cache
    /// belong to.
    source_hash: String,
    elapsed: Duration,
}

enum Event<S> {
    Shutdown,
    Reload,
    Finished(Box<Result<Finished<S>, JoinError>>),
    Wake,
}

/// Where a config's items are mapped: a worker process, or `None` for this process.
type MapWorker = Option<MapIn>;

/// A worker process, and the handle that ends its child while a sync holds the worker.
#[derive(Clone)]
struct MapIn {
    worker: Arc<tokio::sync::Mutex<Worker>>,
    killer: Killer,
}

/// A reloaded config with new mappings, not yet run on items.
struct Candidate {
    id: u64,
    config: Arc<Config>,
    worker: MapWorker,
}

/// The daemon's state between events.
struct Daemon<A: Adapters> {
    adapters: Arc<A>,
    options: WatchOptions,
    shared: Arc<Shared>,
    config: Arc<Config>,
    worker: MapWorker,
    candidate: Option<Candidate>,
    candidates: u64,
    /// The last reload found the files invalid or needing a restart. A candidate accepted after
    /// that must not clear the error: the files still say something that is not running.
    files_rejected: bool,
    catalog: Arc<A::Catalog>,
    /// The source and the cache of its last listing, and the `source` section hash they were
    /// made with. A sync whose config has another hash opens a new source and lists afresh, so
    /// items listed with other settings (an old config, a rejected or replaced candidate) never
    /// serve it.
    source: Option<Arc<A::Source>>,
    cache: Option<Arc<Cache>>,
    source_hash: String,
    scheduler: Scheduler,
    watcher: FsWatcher,
    syncs: u64,
    /// The items that failed to map under the running config in its last sync; `None` until it
    /// has synced. A candidate that fails other items is refused.
    failing: Option<Arc<BTreeSet<sync::ItemRef>>>,
}

async fn run_loaded<A: Adapters>(
    adapters: A,
    config: Config,
    options: WatchOptions,
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let catalog = Arc::new(adapters.open_catalog(&config)?);
    shared.metrics.config_ok.set(1);
    let counted = Arc::clone(&catalog);
    shared.count_port_requests(Box::new(move || counted.take_requests()));

    let (http_stop, http_stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(http::serve(listener, Arc::clone(&shared), async move {
        let _ = http_stopped.await;
    }));

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (reload_tx, mut reload_rx) = mpsc::channel(1);
    let watcher = FsWatcher::new(events_tx)?;
    let debouncer = tokio::spawn(reload::debounce(events_rx, reload_tx, options.debounce));

    let mut daemon = Daemon {
        adapters: Arc::new(adapters),
        scheduler: Scheduler::new(Instant::now(), config.resync_interval),
        worker: map_worker(&options, &config),
        candidate: None,
        candidates: 0,
        files_rejected: false,
        config: Arc::new(config),
        options,
        shared,
        catalog,
        source: None,
        cache: None,
        source_hash: String::new(),
        watcher,
        syncs: 0,
        failing: None,
    };
    daemon.arm();
    info!(config = %daemon.options.config_path.display(), interval = ?daemon.config.resync_interval, "watching");

    let mut running: Option<Running<A::Source>> = None;
    let mut reloads_open = true;
    tokio::pin!(shutdown);
    loop {
        if running.is_none() {
            let now = Instant::now();
            if let Some(mode) = daemon.scheduler.due(now) {
                daemon.scheduler.started(mode, now);
                running = Some(daemon.start(mode));
            }
        }
        let wake = daemon.scheduler.next_wakeup();
        let event = tokio::select! {
            () = &mut shutdown => Event::Shutdown,
            r = reload_rx.recv(), if reloads_open => match r {
                Some(()) => Event::Reload,
                None => {
                    reloads_open = false;
                    Event::Wake
                }
            },
            f = wait(&mut running) => Event::Finished(Box::new(f)),
            () = sleep_until(wake) => Event::Wake,
        };
        match event {
            Event::Shutdown => break,
            Event::Reload => daemon.reload(),
            Event::Finished(f) => {
                running = None;
                daemon.finished(*f);
            }
            Event::Wake => {}
        }
    }

    info!("shutting down");
    debouncer.abort();
    if let Some(r) = running.take() {
        daemon.stop(r).await;
    }
    let _ = http_stop.send(());
    match tokio::time::timeout(HTTP_DRAIN, http).await {
        Ok(Ok(Err(e))) => warn!("the HTTP server failed: {e}"),
        Ok(_) => {}
        Err(_) => warn!("the HTTP server did not stop within {HTTP_DRAIN:?}"),
    }
    info!("stopped");
    Ok(())
}

fn map_worker(options: &WatchOptions, config: &Config) -> MapWorker {
    let worker = Worker::new(options.map_worker.clone()?, &config.mappings);
    options.children.add(&worker.killer());
    Some(MapIn {
        killer: worker.killer(),
        worker: Arc::new(tokio::sync::Mutex::new(worker)),
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn wait<S>(running: &mut Option<Running<S>>) -> Result<Finished<S>, JoinError> {
    match running {
        Some(r) => (&mut r.handle).await,
        None => std::future::pending().await,
    }
}

impl<A: Adapters> Daemon<A> {
    /// Watches the directories of every path the running config and a pending candidate name
    /// (again).
    fn arm(&mut self) {
        let mut paths = self.config.watched_paths.clone();
        if let Some(c) = &self.candidate {
            paths.extend(c.config.watched_paths.iter().cloned());
        }
        let set = WatchSet::new(&paths);
        for (dir, e) in self.watcher.arm(set) {
            warn!(dir = %dir.display(), "cannot watch for changes: {e}");
        }
    }

    fn start(&mut self, mode: Mode) -> Running<A::Source> {
        self.syncs += 1;
        let control = Arc::new(sync::ApplyControl::default());
        let flag = Arc::clone(&control);
        let (config, worker, candidate, baseline) = match &self.candidate {
            Some(c) => (
                Arc::clone(&c.config),
                c.worker.clone(),
                Some(c.id),
                self.failing.clone(),
            ),
            None => (Arc::clone(&self.config), self.worker.clone(), None, None),
        };
        let killer = worker.as_ref().map(|w| w.killer.clone());
        let (adapters, catalog) = (Arc::clone(&self.adapters), Arc::clone(&self.catalog));
        let source_hash = config.section_hashes.source.clone();
        let (source, cache) = if source_hash == self.source_hash {
            (self.source.clone(), self.cache.clone())
        } else {
            (None, None)
        };
        let shared = Arc::clone(&self.shared);
        let span = info_span!("sync", n = self.syncs, requested = mode.as_str());
        let handle = tokio::spawn(
            async move {
                let started = Instant::now();
                let source = match source {
                    Some(s) => s,
                    None => match adapters.open_source(&config).await {
                        Ok(s) => Arc::new(s),
                        Err(e) => {
                            return Finished {
                                run: SyncRun {
                                    mode: Mode::Full,
                                    result: Err(SyncError::Source(e)),
                                    cache: CacheUpdate::Keep,
                                },
                                candidate,
                                source: None,
                                source_hash,
                                elapsed: started.elapsed(),
                            };
                        }
                    },
                };
                let counted = Arc::clone(&source);
                shared.count_aws_requests(Box::new(move || counted.take_requests()));
                let run = sync::sync(
                    mode,
                    &config,
                    worker.as_ref().map(|w| w.worker.as_ref()),
                    source.as_ref(),
                    catalog.as_ref(),
                    cache.as_deref(),
                    &flag,
                    baseline.as_deref(),
                )
                .await;
                Finished {
                    run,
                    candidate,
                    source: Some(source),
                    source_hash,
                    elapsed: started.elapsed(),
                }
            }
            .instrument(span),
        );
        Running {
            handle,
            control,
            killer,
        }
    }

    fn finished(&mut self, finished: Result<Finished<A::Source>, JoinError>) {
        // Scrapes read the counts too; this makes a sync's requests show as soon as it ends.
        self.shared.record_requests();
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let f = match finished {
            Ok(f) => f,
            Err(e) => {
                error!("a sync task ended abnormally: {e}");
                metrics.sync("full", SyncOutcome::Failed, 0.0);
                self.shared.update(|r| {
                    r.last_sync_error = Some(format!("the sync task ended abnormally: {e}"))
                });
                self.scheduler.finished(Mode::Full, false, Instant::now());
                return;
            }
        };
        if f.source_hash != self.source_hash {
            // The sync ran with other source settings than what is kept: its results replace it.
            self.source_hash = f.source_hash;
            self.source = None;
            self.cache = None;
        }
        if f.source.is_some() {
            self.source = f.source;
        }
        if let CacheUpdate::Replace(cache) = f.run.cache {
            self.cache = cache;
        }
        self.update_cache_metrics();
        let rejected = f.candidate.is_some_and(|id| self.settle(id, &f.run.result));
        let mode = f.run.mode;
        if mode == Mode::Full {
            metrics.source_listings.inc();
        }
        let seconds = f.elapsed.as_secs_f64();
        match f.run.result {
            Ok(synced) => {
                // What the (now) running mappings fail is what a later candidate is held to.
                self.failing = Some(Arc::new(sync::failing_items(&synced.collected)));
                let outcome = if synced.is_partial() {
                    SyncOutcome::Partial
                } else {
                    SyncOutcome::Ok
                };
                metrics.record(&synced.collected, &synced.plan, synced.report.as_ref());
                metrics.sync(mode.as_str(), outcome, seconds);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                metrics.last_success.set(now.as_secs_f64());
                self.shared.update(|r| {
                    r.synced = true;
                    r.last_sync_error = None;
                });
                self.scheduler.finished(mode, true, Instant::now());
            }
            Err(_) if rejected => {
                // The candidate failed, not the running config: no backoff, and the readiness
                // error is the config's (set by `settle`).
                metrics.sync(mode.as_str(), SyncOutcome::Failed, seconds);
                self.scheduler.finished(mode, true, Instant::now());
            }
            Err(e) => {
                metrics.sync(mode.as_str(), SyncOutcome::Failed, seconds);
                self.scheduler.finished(mode, false, Instant::now());
                let retry = self
                    .scheduler
                    .next_wakeup()
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or_default();
                error!(mode = mode.as_str(), failures = self.scheduler.failures(), retry_in = ?retry, "sync failed: {e}");
                self.shared
                    .update(|r| r.last_sync_error = Some(e.to_string()));
            }
        }
    }

    /// Decides a candidate after a sync mapped with it: mapping that stopped rejects it (and
    /// `true` says so), mapping that completed makes it the running config, a listing that failed
    /// first leaves it pending for the retry.
    fn settle(&mut self, id: u64, result: &Result<sync::Synced, SyncError>) -> bool {
        if self.candidate.as_ref().is_none_or(|c| c.id != id) {
            // Replaced or withdrawn by a newer reload meanwhile, after its sync may have applied
            // something: sync again with what the files say now.
            self.scheduler.request(Mode::Remap);
            return false;
        }
        match result {
            Err(e @ (SyncError::Mapping(_) | SyncError::Regressed(_))) => {
                self.candidate = None;
                let message = format!(
                    "the new mappings were not applied, the last good config is still running: {e}"
                );
                error!("{message}");
                self.record_reload(ReloadOutcome::Invalid, Some(message));
                // The running config has not synced since; it does so now, without backoff.
                self.scheduler.request(Mode::Remap);
                true
            }
            Err(SyncError::Source(_) | SyncError::WaitingForBlueprints) => false,
            Ok(_) | Err(SyncError::Catalog(_) | SyncError::Stopped(_)) => {
                if let Some(accepted) = self.candidate.take() {
                    info!("the new mappings mapped every item; they are now the running config");
                    self.commit(accepted.config, accepted.worker);
                }
                false
            }
        }
    }

    /// Makes `config` the running config.
    fn commit(&mut self, config: Arc<Config>, worker: MapWorker) {
        self.config = config;
        self.worker = worker;
        self.scheduler.set_interval(self.config.resync_interval);
        let limit = self
            .config
            .watch_cache_limit_mib
            .saturating_mul(1024 * 1024);
        if self.cache.as_ref().is_some_and(|c| c.bytes as u64 > limit) {
            self.cache = None;
            self.update_cache_metrics();
        }
        self.record_reload(ReloadOutcome::Ok, None);
        self.arm();
    }

    /// Records how a reload ended, once: the metric, and `/readyz`'s config error with
    /// `tidemark_config_ok`. A success clears the error only when the files on disk are the
    /// ones running (a broken save made meanwhile keeps its error).
    fn record_reload(&self, outcome: ReloadOutcome, error: Option<String>) {
        let metrics = &self.shared.metrics;
        metrics.reload(outcome);
        match error {
            Some(message) => {
                self.shared.update(|r| r.config_error = Some(message));
                metrics.config_ok.set(0);
            }
            None if !self.files_rejected => {
                self.shared.update(|r| r.config_error = None);
                metrics.config_ok.set(1);
            }
            None => {}
        }
    }

    fn update_cache_metrics(&self) {
        let (bytes, items) = self
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.bytes, c.raw.len()));
        self.shared
            .metrics
            .cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.shared
            .metrics
            .cache_items
            .set(i64::try_from(items).unwrap_or(i64::MAX));
    }

    /// Loads the config again. Nothing changes unless every file loads and compiles.
    fn reload(&mut self) {
        let path = self.options.config_path.clone();
        // A pending candidate is replaced only by a config that can be applied. A broken save (or
        // one that needs a restart) landing while the candidate's sync runs keeps it: withdrawing
        // it would make that sync's end re-map with the config from before the good edit.
        self.files_rejected = true;
        match config::load(&path, &self.options.env) {
            Err(diagnostics) => {
                let (errors, warnings): (Vec<_>, Vec<_>) =
                    diagnostics.into_iter().partition(Diagnostic::is_error);
                for w in &warnings {
                    warn!("{w}");
                }
                for e in &errors {
                    error!("{e}");
                }
                error!(
                    errors = errors.len(),
                    "the new config is invalid; still running the last good config"
                );
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                let summary = format!(
                    "{} error(s) in the new config, the last good config is still running; first: {first}",
                    errors.len()
                );
                self.record_reload(ReloadOutcome::Invalid, Some(summary));
            }
            Ok((mut loaded, warnings)) => {
                for w in &warnings {
                    warn!("{w}");
                }
                // The shard stays what the daemon started as; a changed `shard:` needs a
                // restart, which `classify` reports.
                loaded.shard = self.config.shard;
                let change = reload::classify(&self.config, &loaded);
                if !matches!(change, Change::NeedsRestart { .. }) {
                    self.files_rejected = false;
                    self.candidate = None;
                }
                match change {
                    Change::Unchanged => {
                        self.record_reload(ReloadOutcome::Unchanged, None);
                    }
                    Change::NeedsRestart { sections } => {
                        let message = format!(
                            "{} changed in {}: restart tidemark to apply that; still running the previous config",
                            sections.join(" and "),
                            path.display()
                        );
                        error!("{message}");
                        self.record_reload(ReloadOutcome::Rejected, Some(message));
                    }
                    Change::Apply {
                        source,
                        mappings,
                        settings,
                    } => {
                        info!(source, mappings, settings, "config reloaded");
                        if source {
                            self.scheduler.request(Mode::Full);
                        } else if mappings {
                            self.scheduler.request(Mode::Remap);
                        }
                        if mappings {
                            self.candidates += 1;
                            self.candidate = Some(Candidate {
                                id: self.candidates,
                                worker: map_worker(&self.options, &loaded),
                                config: Arc::new(loaded),
                            });
                        } else {
                            // Same mappings: the compiled worker serves the new config too.
                            let worker = self.worker.clone();
                            self.commit(Arc::new(loaded), worker);
                        }
                    }
                }
            }
        }
        // Re-resolve on every reload: a swapped folder is a new inode, a new config may name new files.
        self.arm();
    }

    /// Shutdown with a sync in progress: a listing is dropped at once (it wrote nothing), an
    /// apply stops after the writes in flight, within `shutdown_grace`.
    async fn stop(&mut self, running: Running<A::Source>) {
        let Running {
            mut handle,
            control,
            killer,
        } = running;
        let grace = self.options.shutdown_grace;
        // Mapping in the worker blocks the sync task in pipe I/O, where aborting it cannot reach
        // it; ending the child makes that I/O fail at once. After mapping it is idle and no
        // longer needed.
        if let Some(killer) = killer {
            killer.kill();
        }
        if !control.stop() {
            handle.abort();
            if tokio::time::timeout(grace, handle).await.is_err() {
                warn!("the sync did not stop within {grace:?}; exiting without it");
            }
            return;
        }
        info!(grace = ?grace, "stopping the apply in progress after the writes in flight");
        match tokio::time::timeout(grace, &mut handle).await {
            Ok(f) => self.finished(f),
            Err(_) => {
                warn!("the apply did not finish within {grace:?}; stopping it");
                handle.abort();
            }
        }
    }
}

/// Registers the SIGTERM and SIGINT handlers at once and resolves on the first of those signals.
/// After that, a second one exits the process at once (exit 0), without waiting for an apply in
/// progress. Call it before loading the config: until a handler is registered a signal has its
/// default effect, which ends the process by signal (exit 143) instead of shutting it down.
/// Must be called within the runtime. A second signal calls `exit_now`, which the binary
/// supplies: it ends the mapping workers' children and exits 0 at once, never returning.
pub fn signals(exit_now: impl FnOnce() + Send + 'static) -> impl Future<Output = ()> {
    #[cfg(unix)]
    let registered = {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        }
    };
    async move {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = registered {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("SIGINT received"),
            }
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                warn!("second signal: exiting now");
                exit_now();
            });
            return;
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            info!("interrupt received");
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    exit_now();
                }
            });
        } else {
            // No way to receive signals: never resolve rather than shut down at once.
            std::future::pending::<()>().await;
        }
    }
}
