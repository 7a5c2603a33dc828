//! `tidemark watch`: the daemon loop on real files (snapshot source, local SQLite catalog), with a
//! counting wrapper around the real source to prove which syncs list and which only re-map, and
//! the real binary end to end over HTTP and signals. Request metrics and shutdown during an apply
//! run against the AWS (STS, Cloud Control) and Port stand-ins.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tokio::sync::Notify;

use tidemark::adapters::AnySource;
use tidemark::adapters::aws::{AwsSource, BaseAws, ServiceEndpoints};
use tidemark::adapters::local::LocalCatalog;
use tidemark::adapters::{Catalog, CatalogError, ReadCheck};
use tidemark::adapters::{ItemSink, Source, SourceError};
use tidemark::config::{Config, ProcessEnv};
use tidemark::core::model::{
    Blueprint, EntityKey, ForeignEntity, ForeignReference, OwnedEntity, RawItem,
};
use tidemark::core::report::{ListRequest, SourceReport};
use tidemark::core::writes::{ApplyReport, NoProgress, Progress, Writes};
use tidemark::engine::{self, InProcess};
use tidemark::watch::{self, Adapters, Configured, Shared, WatchError, WatchOptions};

use support::aws_stand_ins::{sdk_config, source_config};
use support::cli::{BIN, Workspace};
use support::cloudcontrol::{CloudControl, Effect, Fault, Keys};
use support::fixtures::{self, ACCOUNT_RELATION, ACCOUNT_RESOURCE, QueueResource, REGION};
use support::port_standin::{CLIENT_ID, CLIENT_SECRET, PortStandIn};
use support::sts::{BASE_ACCOUNT, StsStandIn};

const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";
const OWNER: &str = "watch-test";
/// Generous: these waits end as soon as the condition holds; the bound only stops a hung test.
const PATIENCE: Duration = Duration::from_secs(30);

/// Queues in the `queue` blueprint with their region, related to their account.
fn queue_mapping() -> String {
    let queues = QueueResource {
        blueprint: "queue",
        select_all: true,
        properties: &[REGION],
        relations: &[ACCOUNT_RELATION],
    };
    fixtures::mapping(&[&queues.yaml()])
}

fn account_mapping() -> String {
    fixtures::mapping(&[ACCOUNT_RESOURCE])
}

fn blueprints() -> String {
    fixtures::account_and_queue_blueprints(&[("region", "string")])
}

/// A workspace with a config, a snapshot of two accounts with three queues each, and no
/// mappings: `mappings` is the config's `mappings:` value, and the caller writes the files it
/// names.
fn workspace(mappings: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("tidemark.yaml", &fixtures::snapshot_config(OWNER, mappings));
    write_snapshot(&ws, 3);
    ws
}

/// [`workspace`] with the queue mapping and its blueprints.
fn queue_workspace() -> Workspace {
    let ws = workspace("[mappings/queues.yaml]");
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/blueprints.json", &blueprints());
    ws
}

/// The config with Port (`url`, the stand-in's credentials) as the catalog.
fn write_port_config(ws: &Workspace, url: &str) {
    ws.write(
        "tidemark.yaml",
        &format!(
            "integration: {{identifier: {OWNER}}}\nsource: {{type: snapshot, path: snap}}\ncatalog: {{type: port, baseUrl: '{url}', clientId: {CLIENT_ID}, clientSecret: {CLIENT_SECRET}}}\nmappings: [mappings/queues.yaml]\n"
        ),
    );
}

/// A snapshot of two accounts with `queues` queues each.
fn write_snapshot(ws: &Workspace, queues: usize) {
    fixtures::write_queue_snapshot(
        &|rel, text| ws.write(rel, text),
        &[(PROD, "prod"), (STAGING, "staging")],
        &|account| {
            (0..queues)
                .map(|i| fixtures::sqs_queue(account, "us-east-1", &format!("q{i}")))
                .collect()
        },
    );
}

/// Records `account`'s queue listing in the snapshot as failed.
fn fail_listing(ws: &Workspace, account: &str) {
    let mut manifest = ws.read_json("snap/manifest.json");
    for scope in manifest["scopes"].as_array_mut().expect("scopes") {
        if scope["account"] == account {
            scope["status"] = json!("failed");
            scope["error"] = json!("AccessDenied: recorded as failed");
        }
    }
    ws.write("snap/manifest.json", &manifest.to_string());
}

/// (blueprint, identifier, title) of every owned entity, sorted.
async fn owned(ws: &Workspace) -> Vec<(String, String, Json)> {
    let catalog = LocalCatalog::open(&ws.path(".tidemark/catalog.db")).expect("open catalog");
    let mut owned: Vec<(String, String, Json)> = catalog
        .owned(OWNER, &[])
        .await
        .expect("owned")
        .into_iter()
        .map(|o| {
            (
                o.entity.blueprint.clone(),
                o.entity.identifier.clone(),
                serde_json::to_value(&o.entity).expect("json")["title"].clone(),
            )
        })
        .collect();
    owned.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    owned
}

async fn queue_titles(ws: &Workspace) -> Vec<String> {
    owned(ws)
        .await
        .into_iter()
        .filter(|e| e.0 == "queue")
        .map(|e| e.2.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The configured adapters, with every source listing counted.
struct Counting {
    listings: Arc<AtomicUsize>,
}

struct CountingSource {
    inner: AnySource,
    listings: Arc<AtomicUsize>,
}

impl Source for CountingSource {
    async fn list(
        &self,
        request: &ListRequest,
        sink: &mut dyn ItemSink,
    ) -> Result<SourceReport, SourceError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.list(request, sink).await
    }
}

impl Adapters for Counting {
    type Source = CountingSource;
    type Catalog = <Configured as Adapters>::Catalog;

    async fn open_source(&self, config: &Config) -> Result<CountingSource, SourceError> {
        Ok(CountingSource {
            inner: AnySource::open(config).await?,
            listings: Arc::clone(&self.listings),
        })
    }

    fn open_catalog(
        &self,
        config: &Config,
    ) -> Result<Self::Catalog, tidemark::adapters::CatalogError> {
        Configured.open_catalog(config)
    }
}

/// A daemon running in this process.
struct Daemon {
    shared: Arc<Shared>,
    listings: Arc<AtomicUsize>,
    /// Where `/metrics` is served.
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), WatchError>>,
}

impl Daemon {
    async fn start(config: &Path) -> Daemon {
        let listings = Arc::new(AtomicUsize::new(0));
        let adapters = Counting {
            listings: Arc::clone(&listings),
        };
        Daemon::start_with(adapters, WatchOptions::new(config), listings).await
    }

    /// A daemon on `adapters`; `listings` is what [`Daemon::listings`] reports.
    async fn start_with<A: Adapters>(
        adapters: A,
        mut options: WatchOptions,
        listings: Arc<AtomicUsize>,
    ) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = oneshot::channel::<()>();
        options.debounce = Duration::from_millis(100);
        // As the binary does: items are mapped in a `tidemark __map-worker` child.
        options.map_worker = Some(PathBuf::from(BIN));
        let task = tokio::spawn(watch::run_with(
            adapters,
            options,
            listener,
            Arc::clone(&shared),
            async move {
                let _ = stopped.await;
            },
        ));
        Daemon {
            shared,
            listings,
            port,
            stop: Some(stop),
            task,
        }
    }

    /// `/metrics` as a scraper gets it, over HTTP.
    async fn scrape(&self) -> String {
        let port = self.port;
        let (status, body) = tokio::task::spawn_blocking(move || get(port, "/metrics"))
            .await
            .expect("join")
            .expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }

    fn listings(&self) -> usize {
        self.listings.load(Ordering::SeqCst)
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        metric(&self.shared.metrics.encode(), line_start)
    }

    async fn synced(&self) {
        wait_for("the first sync", || async {
            self.shared.readiness().synced
        })
        .await;
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the daemon stops")
            .expect("join");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `condition` until it holds; panics after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn titled(prefix: &str) -> String {
    titled_with(&format!("\"{prefix}\" + .Properties.QueueName"))
}

/// The mapping with `expression` for the title.
fn titled_with(expression: &str) -> String {
    queue_mapping().replace(
        "title: .Properties.QueueName",
        &format!("title: '{expression}'"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_mapping_is_applied_without_listing_the_source() {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    assert_eq!(
        queue_titles(&ws).await,
        ["q0", "q1", "q2", "q0", "q1", "q2"]
    );
    assert_eq!(daemon.listings(), 1);

    ws.write("mappings/queues.yaml", &titled("Q "));
    wait_for("the edited titles", || async {
        queue_titles(&ws).await.iter().all(|t| t.starts_with("Q "))
    })
    .await;
    assert_eq!(
        daemon.listings(),
        1,
        "a mapping edit listed the source again"
    );
    assert_eq!(
        daemon.metric("tidemark_syncs_total{mode=\"remap\",outcome=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        daemon.metric("tidemark_entities_total{kind=\"AWS::SQS::Queue\",action=\"updated\"}"),
        Some(6.0)
    );
    assert_eq!(
        daemon.metric("tidemark_config_reloads_total{outcome=\"ok\"}"),
        Some(1.0)
    );
    daemon.stop().await;
}

/// Edits the running daemon's title expression to `broken`: the reload must be refused with an
/// error holding every one of `said`, the catalog must not change and the daemon must keep
/// serving; then a good edit must be applied, without listing again.
async fn a_broken_title_is_refused_and_a_fix_is_applied(broken: &str, said: &[&str]) {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    let before = owned(&ws).await;

    ws.write("mappings/queues.yaml", &titled_with(broken));
    wait_for("the reload to be refused", || async {
        daemon.shared.readiness().config_error.is_some()
    })
    .await;
    let error = daemon.shared.readiness().config_error.unwrap_or_default();
    for part in said {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert_eq!(
        daemon.metric("tidemark_config_reloads_total{outcome=\"invalid\"}"),
        Some(1.0)
    );
    assert_eq!(daemon.metric("tidemark_config_ok"), Some(0.0));
    assert_eq!(
        owned(&ws).await,
        before,
        "a broken mapping changed the catalog"
    );
    assert!(!daemon.task.is_finished(), "the daemon stopped");

    ws.write("mappings/queues.yaml", &titled("fixed "));
    wait_for("the fixed titles", || async {
        queue_titles(&ws)
            .await
            .iter()
            .all(|t| t.starts_with("fixed "))
    })
    .await;
    assert_eq!(daemon.shared.readiness().config_error, None);
    assert_eq!(daemon.metric("tidemark_config_ok"), Some(1.0));
    assert_eq!(daemon.listings(), 1, "re-mapping listed the source");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_old_config_and_fixing_it_applies_the_change() {
    // A jq syntax error: the whole reload is refused, naming the file with its position.
    a_broken_title_is_refused_and_a_fix_is_applied(
        r#""X" + (.Properties.QueueName"#,
        &["queues.yaml:"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_that_never_ends_is_rejected_and_the_daemon_keeps_serving() {
    // Compiles, but never produces its last value: only the time limit in the mapping worker can
    // end it, and only the worker ends.
    a_broken_title_is_refused_and_a_fix_is_applied(
        "last(repeat(1)) | tostring",
        &[
            "last good config is still running",
            "last(repeat(1))",
            "did not finish within",
            "kind AWS::SQS::Queue",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_overflows_the_stack_is_rejected_and_the_daemon_keeps_serving() {
    // Aborts the mapping worker at once; only the worker ends, and the error names the item.
    a_broken_title_is_refused_and_a_fix_is_applied(
        "def deeper: 1 + deeper; deeper | tostring",
        &[
            "last good config is still running",
            "overflowed its stack",
            "calls itself without end",
            "kind AWS::SQS::Queue",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_in_a_watched_folder_is_picked_up() {
    let ws = workspace("[mappings]");
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/blueprints.json", &blueprints());
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    // The queues' relations made empty account placeholders; the new file maps the real ones.
    let account_titles = |entities: Vec<(String, String, Json)>| -> Vec<Json> {
        entities
            .into_iter()
            .filter(|e| e.0 == "account")
            .map(|e| e.2)
            .collect()
    };
    assert!(account_titles(owned(&ws).await).iter().all(|t| t.is_null()));

    ws.write("mappings/accounts.yaml", &account_mapping());
    wait_for("the account entities", || async {
        account_titles(owned(&ws).await) == [json!("prod"), json!("staging")]
    })
    .await;
    assert_eq!(
        daemon.listings(),
        1,
        "accounts come from the cached discovery, not a new listing"
    );
    daemon.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    // The layout Kubernetes gives a ConfigMap volume: files are symlinks through `..data`, and an
    // update writes a new timestamped folder, then renames a new `..data` link over the old one.
    let ws = workspace("[cm/queues.yaml]");
    ws.write("cm/..2026_11_01_a/queues.yaml", &queue_mapping());
    ws.write("cm/..2026_11_01_a/blueprints.json", &blueprints());
    symlink("..2026_11_01_a", ws.path("cm/..data")).expect("symlink");
    symlink("..data/queues.yaml", ws.path("cm/queues.yaml")).expect("symlink");
    symlink("..data/blueprints.json", ws.path("cm/blueprints.json")).expect("symlink");
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    assert_eq!(queue_titles(&ws).await.len(), 6);

    ws.write("cm/..2026_11_01_b/queues.yaml", &titled("swapped "));
    ws.write("cm/..2026_11_01_b/blueprints.json", &blueprints());
    symlink("..2026_11_01_b", ws.path("cm/..data_tmp")).expect("symlink");
    std::fs::rename(ws.path("cm/..data_tmp"), ws.path("cm/..data")).expect("rename");
    std::fs::remove_dir_all(ws.path("cm/..2026_11_01_a")).expect("remove old");
    wait_for("the swapped titles", || async {
        queue_titles(&ws)
            .await
            .iter()
            .all(|t| t.starts_with("swapped "))
    })
    .await;
    assert_eq!(daemon.listings(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_rename_replace_of_the_mapping_is_picked_up() {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    ws.write("mappings/.queues.yaml.swp", &titled("renamed "));
    std::fs::rename(
        ws.path("mappings/.queues.yaml.swp"),
        ws.path("mappings/queues.yaml"),
    )
    .expect("rename");
    wait_for("the renamed titles", || async {
        queue_titles(&ws)
            .await
            .iter()
            .all(|t| t.starts_with("renamed "))
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_integration_is_rejected_with_a_message_to_restart() {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    let before = owned(&ws).await;
    ws.write(
        "tidemark.yaml",
        &fixtures::snapshot_config("someone-else", "[mappings/queues.yaml]"),
    );
    wait_for("the rejection", || async {
        daemon.shared.readiness().config_error.is_some()
    })
    .await;
    let error = daemon.shared.readiness().config_error.unwrap_or_default();
    assert!(
        error.contains("integration") && error.contains("restart"),
        "{error}"
    );
    assert_eq!(
        daemon.metric("tidemark_config_reloads_total{outcome=\"rejected\"}"),
        Some(1.0)
    );
    assert_eq!(owned(&ws).await, before);
    // Putting it back clears the failure.
    ws.write(
        "tidemark.yaml",
        &fixtures::snapshot_config(OWNER, "[mappings/queues.yaml]"),
    );
    wait_for("the failure to clear", || async {
        daemon.shared.readiness().config_error.is_none()
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_tried_by_a_withdrawn_reload_never_serves_the_running_config() {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    let before = owned(&ws).await;
    let original = std::fs::read_to_string(ws.config_path()).expect("config");

    // New mappings and a source that cannot list: the candidate's sync fails on the listing, so
    // the candidate stays pending with a source opened for `missing`.
    ws.write(
        "tidemark.yaml",
        &original.replace("path: snap", "path: missing"),
    );
    ws.write("mappings/queues.yaml", &titled("A "));
    wait_for("the candidate's listing to fail", || async {
        daemon.shared.readiness().last_sync_error.is_some()
    })
    .await;
    // Withdrawn: the files are the running config again.
    ws.write("tidemark.yaml", &original);
    ws.write("mappings/queues.yaml", &queue_mapping());
    // The retry must list `snap` with the running config, not the withdrawn source.
    wait_for("a sync with the running config", || async {
        daemon.shared.readiness().last_sync_error.is_none()
    })
    .await;
    assert_eq!(owned(&ws).await, before);
    assert_eq!(daemon.shared.readiness().config_error, None);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_change_lists_again() {
    let ws = queue_workspace();
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    ws.write(
        "tidemark.yaml",
        &format!("integration: {{identifier: {OWNER}}}\nsource: {{type: snapshot, path: snap, regions: [us-east-1]}}\ncatalog: {{type: local}}\nmappings: [mappings/queues.yaml]\n"),
    );
    wait_for("a second listing", || async { daemon.listings() == 2 }).await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_daemon_lists_again_after_each_interval() {
    let ws = queue_workspace();
    ws.write(
        "tidemark.yaml",
        &format!(
            "{}resync: {{interval: 10m}}\n",
            std::fs::read_to_string(ws.config_path()).expect("read")
        ),
    );
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    assert_eq!(daemon.listings(), 1);
    tokio::time::sleep(Duration::from_secs(9 * 60)).await;
    assert_eq!(daemon.listings(), 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    wait_for("the interval's listing", || async {
        daemon.listings() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    wait_for("the next interval's listing", || async {
        daemon.listings() == 3
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_sync_is_retried_with_backoff_and_the_daemon_keeps_running() {
    let ws = queue_workspace();
    std::fs::remove_file(ws.path("snap/manifest.json")).expect("remove manifest");
    let daemon = Daemon::start(&ws.config_path()).await;
    wait_for("the first attempt", || async { daemon.listings() == 1 }).await;
    let readiness = daemon.shared.readiness();
    assert!(!readiness.synced);
    assert!(readiness.last_sync_error.is_some());
    // First retry after 5 s, the second 10 s after that.
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert_eq!(daemon.listings(), 1, "retried before the backoff");
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for("the first retry", || async { daemon.listings() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(9800)).await;
    assert_eq!(daemon.listings(), 2, "the backoff did not grow");
    write_snapshot(&ws, 3);
    daemon.synced().await;
    assert_eq!(daemon.listings(), 3);
    assert_eq!(
        daemon.metric("tidemark_syncs_total{mode=\"full\",outcome=\"failed\"}"),
        Some(2.0)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_invalid_initial_config_is_an_error() {
    let ws = workspace("[mappings/missing.yaml]");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let result = watch::run_with(
        Configured,
        WatchOptions::new(ws.config_path()),
        listener,
        Arc::new(Shared::new()),
        std::future::pending(),
    )
    .await;
    assert!(matches!(result, Err(WatchError::Config(_))), "{result:?}");
}

// ---- requests to AWS and Port, the raw cache limit, shutdown during an apply ----

const BASE_KEY: &str = "AKIATIDEMARKWATCH001";

/// The AWS source on the STS and Cloud Control stand-ins (whatever the config's `source` says; its
/// `regions` still apply), and the catalog the config names.
struct StandInAws {
    base: BaseAws,
}

impl Adapters for StandInAws {
    type Source = AwsSource;
    type Catalog = <Configured as Adapters>::Catalog;

    async fn open_source(&self, _config: &Config) -> Result<AwsSource, SourceError> {
        AwsSource::with_base(source_config(), self.base.clone()).await
    }

    fn open_catalog(
        &self,
        config: &Config,
    ) -> Result<Self::Catalog, tidemark::adapters::CatalogError> {
        Configured.open_catalog(config)
    }
}

async fn stand_in_aws(sts: &StsStandIn, cc: &CloudControl) -> StandInAws {
    sts.register_base_key(BASE_KEY);
    let sdk_config = sdk_config(&sts.url, BASE_KEY).await;
    StandInAws {
        base: BaseAws {
            sdk_config,
            web_identity: None,
            endpoints: ServiceEndpoints {
                cloudcontrol: Some(cc.url.clone()),
                account: Some(cc.url.clone()),
                ..ServiceEndpoints::default()
            },
        },
    }
}

/// The sum of every sample of `name` (all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_and_port_requests_and_their_retries_are_scraped_from_metrics() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(BASE_ACCOUNT, &["us-east-1"]);
    for i in 0..4 {
        cc.add_sqs_queue(BASE_ACCOUNT, &format!("q{i}"), json!({}));
    }
    let throttles = 2;
    cc.inject(Fault {
        account: None,
        region: None,
        kind: Some("AWS::SQS::Queue".into()),
        effect: Effect::Throttle { times: throttles },
    });
    let port = PortStandIn::start().await;
    let port_429s = 2;
    port.faults(|f| {
        f.burst_429 = port_429s;
        f.retry_after = "0".into();
    });
    let ws = workspace("[mappings/queues.yaml]");
    write_port_config(&ws, port.url());
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/blueprints.json", &blueprints());

    let daemon = Daemon::start_with(
        stand_in_aws(&sts, &cc).await,
        WatchOptions::new(ws.config_path()),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    daemon.synced().await;
    let text = daemon.scrape().await;
    let value = |line: &str| metric(&text, line).unwrap_or_else(|| panic!("no {line} in\n{text}"));

    // Every ListResources the stand-in received is counted, the throttled ones apart, and each
    // throttled one was retried.
    let received = cc
        .calls()
        .iter()
        .filter(|c| c.operation == "ListResources")
        .count();
    let ok = value(
        r#"tidemark_aws_requests_total{service="cloudcontrol",operation="ListResources",outcome="ok"}"#,
    );
    let throttled = value(
        r#"tidemark_aws_requests_total{service="cloudcontrol",operation="ListResources",outcome="throttled"}"#,
    );
    assert_eq!(throttled, throttles as f64);
    assert_eq!(ok + throttled, received as f64);
    assert_eq!(
        value(r#"tidemark_aws_retries_total{service="cloudcontrol",operation="ListResources"}"#),
        throttles as f64
    );
    assert!(
        value(
            r#"tidemark_aws_requests_total{service="account",operation="ListRegions",outcome="ok"}"#
        ) >= 1.0
    );
    let identities = sts
        .calls()
        .iter()
        .filter(|c| c.action == "GetCallerIdentity")
        .count();
    assert_eq!(
        value(
            r#"tidemark_aws_requests_total{service="sts",operation="GetCallerIdentity",outcome="ok"}"#
        ),
        identities as f64
    );
    // No series carries an account id.
    assert!(!text.contains(BASE_ACCOUNT), "{text}");

    // Every request Port received is counted; the first ones, the token requests, were throttled
    // and retried.
    let seen = port.counters();
    assert_eq!(
        metric_sum(&text, "tidemark_port_requests_total"),
        (seen.reads + seen.writes + seen.auth) as f64
    );
    assert_eq!(
        value(r#"tidemark_port_requests_total{operation="auth",outcome="throttled"}"#),
        port_429s as f64
    );
    assert_eq!(
        value(r#"tidemark_port_retries_total{operation="auth"}"#),
        port_429s as f64
    );
    assert!(value(r#"tidemark_port_requests_total{operation="write",outcome="ok"}"#) >= 1.0);
    let queues = port
        .entities()
        .iter()
        .filter(|e| e.blueprint == "queue")
        .count();
    assert_eq!(queues, 4);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_long_listing_shows_the_requests_sent_so_far() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(BASE_ACCOUNT, &["us-east-1"]);
    // Four pages of half a second each.
    for i in 0..12 {
        cc.add_sqs_queue(BASE_ACCOUNT, &format!("q{i}"), json!({}));
    }
    cc.set_latency(Duration::from_millis(500));
    let ws = queue_workspace();
    let daemon = Daemon::start_with(
        stand_in_aws(&sts, &cc).await,
        WatchOptions::new(ws.config_path()),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let ok = r#"tidemark_aws_requests_total{service="cloudcontrol",operation="ListResources",outcome="ok"}"#;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let text = loop {
        let text = daemon.scrape().await;
        if metric(&text, ok).is_some() {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no request counted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Scraped before the listing ended: the count came from the running sync.
    assert!(!daemon.shared.readiness().synced, "{text}");
    daemon.synced().await;
    let pages = cc
        .calls()
        .iter()
        .filter(|c| c.operation == "ListResources")
        .count();
    let text = daemon.scrape().await;
    assert_eq!(metric(&text, ok), Some(pages as f64), "{text}");
    daemon.stop().await;
}

#[tokio::test]
async fn the_raw_cache_is_dropped_during_the_listing_at_the_first_item_past_the_limit() {
    let ws = queue_workspace();
    write_snapshot(&ws, 20);
    let (config, _) =
        tidemark::config::load(&ws.config_path(), &ProcessEnv::default()).expect("config");
    let source = AnySource::open(&config).await.expect("source");
    let everything = engine::collect(&config, &source, true, &NoProgress)
        .await
        .expect("collect");
    let sizes: Vec<usize> = everything
        .raw
        .as_ref()
        .expect("raw items")
        .iter()
        .map(RawItem::approx_size)
        .collect();
    let total: usize = sizes.iter().sum();

    let limit = (total / 3) as u64;
    let bounded = engine::collect_with(
        &config,
        &source,
        Some(limit),
        &NoProgress,
        &mut InProcess(&config.mappings),
    )
    .await
    .expect("collect");
    assert!(bounded.raw.is_none());
    assert!(bounded.raw_overflowed);
    // Counting stopped at the first item past the limit: the rest of the listing was never held.
    let crossing = sizes
        .iter()
        .scan(0usize, |sum, size| {
            *sum += size;
            Some(*sum)
        })
        .find(|sum| *sum as u64 > limit)
        .expect("the listing passes the limit");
    assert_eq!(bounded.raw_bytes, crossing);
    assert!(bounded.raw_bytes < total);
    // Mapping does not depend on the cache.
    assert_eq!(bounded.desired.len(), everything.desired.len());

    let within = engine::collect_with(
        &config,
        &source,
        Some(total as u64),
        &NoProgress,
        &mut InProcess(&config.mappings),
    )
    .await
    .expect("collect");
    assert!(!within.raw_overflowed);
    assert_eq!(within.raw.map(|r| r.len()), Some(sizes.len()));
    assert_eq!(within.raw_bytes, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cache_limit_a_mapping_edit_lists_the_source_again() {
    let ws = queue_workspace();
    ws.write(
        "tidemark.yaml",
        &format!(
            "{}watch: {{cacheLimitMiB: 0}}\n",
            std::fs::read_to_string(ws.config_path()).expect("read")
        ),
    );
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    assert_eq!(daemon.metric("tidemark_cache_items"), Some(0.0));
    assert_eq!(daemon.metric("tidemark_cache_bytes"), Some(0.0));
    assert_eq!(queue_titles(&ws).await.len(), 6);

    ws.write("mappings/queues.yaml", &titled("L "));
    wait_for("the edited titles", || async {
        queue_titles(&ws).await.iter().all(|t| t.starts_with("L "))
    })
    .await;
    assert_eq!(daemon.listings(), 2, "the edit was not a full listing");
    assert_eq!(
        daemon.metric("tidemark_syncs_total{mode=\"full\",outcome=\"ok\"}"),
        Some(2.0)
    );
    assert_eq!(
        daemon.metric("tidemark_syncs_total{mode=\"remap\",outcome=\"ok\"}"),
        None
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_failed_listing_is_counted_apart_from_the_ok_ones() {
    let ws = queue_workspace();
    fail_listing(&ws, STAGING);
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    assert_eq!(daemon.metric("tidemark_accounts{status=\"ok\"}"), Some(1.0));
    assert_eq!(
        daemon.metric("tidemark_accounts{status=\"scopes_failed\"}"),
        Some(1.0)
    );
    assert_eq!(daemon.metric("tidemark_scopes_failed"), Some(1.0));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_withholds_the_deletes_of_a_failed_scope_as_a_full_sync_does() {
    // The account entities keep the mass-delete guards out of it: losing its three queues would
    // not remove every one of staging's entities, nor more than the threshold's share.
    let ws = workspace("[mappings/queues.yaml, mappings/accounts.yaml]");
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/accounts.yaml", &account_mapping());
    ws.write("mappings/blueprints.json", &blueprints());
    apply_once(&ws);
    // Staging's queues are owned now; its listing fails from here on, so nothing proves them gone.
    fail_listing(&ws, STAGING);
    let daemon = Daemon::start(&ws.config_path()).await;
    daemon.synced().await;
    let withheld = "tidemark_entities_withheld{kind=\"AWS::SQS::Queue\"}";
    assert_eq!(daemon.metric(withheld), Some(3.0), "the full sync");

    ws.write("mappings/queues.yaml", &titled("Q "));
    let remaps = |outcome: &str| {
        daemon
            .metric(&format!(
                "tidemark_syncs_total{{mode=\"remap\",outcome=\"{outcome}\"}}"
            ))
            .unwrap_or(0.0)
    };
    wait_for("the re-map", || async {
        remaps("ok") + remaps("partial") + remaps("failed") > 0.0
    })
    .await;
    assert_eq!(remaps("partial"), 1.0, "the re-map was not partial");
    assert_eq!(daemon.listings(), 1, "the edit listed the source again");
    // What a full sync with the edited mapping would withhold: `tidemark plan` on the same files.
    let out = Command::new(BIN)
        .args(["plan", "--format", "json", "-c"])
        .arg(ws.config_path())
        .output()
        .expect("run tidemark plan");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Json = serde_json::from_slice(&out.stdout).expect("plan json");
    let planned = plan["withheld"].as_array().expect("withheld");
    assert!(
        planned.len() == 3 && planned.iter().all(|w| w["reason"] == "scope_failed"),
        "{planned:?}"
    );
    let planned = planned.len();
    assert_eq!(daemon.metric(withheld), Some(planned as f64));
    let mut titles = queue_titles(&ws).await;
    titles.sort();
    assert_eq!(
        titles,
        ["Q q0", "Q q1", "Q q2", "q0", "q1", "q2"],
        "staging's queues must be kept as they were, prod's updated"
    );
    daemon.stop().await;
}

/// Every queue the snapshot holds is in Port, whole: the title and properties the mapping gives.
fn assert_queues_whole(port: &PortStandIn, per_account: usize) -> usize {
    let queues: Vec<_> = port
        .entities()
        .into_iter()
        .filter(|e| e.blueprint == "queue")
        .collect();
    for q in &queues {
        let (account, name) = q
            .identifier
            .strip_prefix("arn:aws:sqs:us-east-1:")
            .and_then(|rest| rest.split_once(':'))
            .unwrap_or_else(|| panic!("unexpected identifier {}", q.identifier));
        assert!([PROD, STAGING].contains(&account), "{q:?}");
        assert_eq!(q.body.get("title"), Some(&json!(name)), "{q:?}");
        assert_eq!(
            q.body.get("properties"),
            Some(&json!({"region": "us-east-1"})),
            "{q:?}"
        );
        assert_eq!(
            q.body.get("relations").and_then(|r| r.get("account")),
            Some(&json!(account)),
            "{q:?}"
        );
    }
    assert!(queues.len() <= 2 * per_account);
    queues.len()
}

/// The Port client's default number of requests in flight, and Port's bulk size: at most this
/// many queues can be written by the requests in flight when a stop comes.
const IN_FLIGHT_QUEUES: usize = 8 * 20;
/// Queues per account in the Port shutdown tests: 30 bulk requests in all, several rounds of
/// [`IN_FLIGHT_QUEUES`], so an apply that ignored a stop between bulk requests would write them all.
const MANY_QUEUES: usize = 300;

fn queue_count(port: &PortStandIn) -> usize {
    port.entities()
        .into_iter()
        .filter(|e| e.blueprint == "queue")
        .count()
}

/// Starts a daemon syncing [`MANY_QUEUES`] per account into Port, each request taking `latency`,
/// and stops it once the first round of queue bulks is in: returns how many queues were written
/// then, and how long the daemon took to stop.
async fn stop_during_the_queue_bulks(
    port: &PortStandIn,
    ws: &Workspace,
    latency: Duration,
    grace: Duration,
) -> (usize, Duration) {
    port.faults(|f| f.latency = latency);
    write_snapshot(ws, MANY_QUEUES);
    write_port_config(ws, port.url());
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/blueprints.json", &blueprints());
    let mut options = WatchOptions::new(ws.config_path());
    options.shutdown_grace = grace;
    let listings = Arc::new(AtomicUsize::new(0));
    let adapters = Counting {
        listings: Arc::clone(&listings),
    };
    let daemon = Daemon::start_with(adapters, options, listings).await;
    wait_for("the first queues to be written", || async {
        queue_count(port) > 0
    })
    .await;
    let before = queue_count(port);
    let stopping = tokio::time::Instant::now();
    daemon.stop().await;
    (before, stopping.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_apply_waits_for_the_bulks_in_flight_and_starts_no_more() {
    let port = PortStandIn::start().await;
    let ws = workspace("[mappings/queues.yaml]");
    let latency = Duration::from_millis(300);
    let (before, _) =
        stop_during_the_queue_bulks(&port, &ws, latency, Duration::from_secs(25)).await;
    // Anything still on its way would land within one more request's latency.
    tokio::time::sleep(2 * latency).await;
    let written = assert_queues_whole(&port, MANY_QUEUES);
    assert!(
        written > before,
        "the bulks in flight at the stop were not waited for ({before} then {written})"
    );
    assert!(
        written <= before + IN_FLIGHT_QUEUES && written < 2 * MANY_QUEUES,
        "bulk requests started after the stop: {before} queues at the stop, {written} after"
    );

    port.faults(|f| f.latency = Duration::ZERO);
    port.reset_counters();
    let again = Daemon::start(&ws.config_path()).await;
    again.synced().await;
    assert_eq!(assert_queues_whole(&port, MANY_QUEUES), 2 * MANY_QUEUES);
    assert_eq!(
        port.counters().entity_writes,
        2 * MANY_QUEUES - written,
        "the next run wrote again what the stopped apply had written"
    );
    assert_eq!(
        again.metric("tidemark_syncs_total{mode=\"full\",outcome=\"ok\"}"),
        Some(1.0)
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_stopped_after_the_grace_period_leaves_no_half_written_entity() {
    let port = PortStandIn::start().await;
    let ws = workspace("[mappings/queues.yaml]");
    // Requests that outlast the grace period many times over: the apply is stopped with bulks in
    // flight, not after them.
    let latency = Duration::from_secs(1);
    let grace = Duration::from_millis(100);
    let (before, took) = stop_during_the_queue_bulks(&port, &ws, latency, grace).await;
    assert!(
        took < latency / 2,
        "the daemon waited {took:?} for the bulks in flight, past its {grace:?} grace"
    );
    tokio::time::sleep(2 * latency).await;
    // Whatever got written before the apply was stopped is whole, and nothing started after.
    let written = assert_queues_whole(&port, MANY_QUEUES);
    assert!(
        written <= before + IN_FLIGHT_QUEUES && written < 2 * MANY_QUEUES,
        "bulk requests started after the stop: {before} queues at the stop, {written} after"
    );

    port.faults(|f| f.latency = Duration::ZERO);
    let again = Daemon::start(&ws.config_path()).await;
    again.synced().await;
    assert_eq!(assert_queues_whole(&port, MANY_QUEUES), 2 * MANY_QUEUES);
    again.stop().await;
}

/// The local catalog, with every apply held up for `delay` before it writes anything, and
/// `applying` notified when an apply begins.
struct SlowCatalog {
    inner: LocalCatalog,
    delay: Duration,
    applying: Arc<Notify>,
}

impl Catalog for SlowCatalog {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        self.inner.blueprints().await
    }

    async fn owned(
        &self,
        owner: &str,
        accounts: &[String],
    ) -> Result<Vec<OwnedEntity>, CatalogError> {
        self.inner.owned(owner, accounts).await
    }

    async fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        self.inner.foreign(owner, keys).await
    }

    async fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        self.inner.foreign_references(owner, keys).await
    }

    async fn search(&self, blueprint: &str, query: &Json) -> Result<Vec<String>, CatalogError> {
        self.inner.search(blueprint, query).await
    }

    async fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> Result<Vec<ReadCheck>, CatalogError> {
        self.inner.preflight(owner, blueprints).await
    }

    async fn apply(&self, owner: &str, writes: &Writes, progress: &dyn Progress) -> ApplyReport {
        self.applying.notify_one();
        tokio::time::sleep(self.delay).await;
        self.inner.apply(owner, writes, progress).await
    }
}

struct Slow {
    path: PathBuf,
    delay: Duration,
    applying: Arc<Notify>,
}

impl Adapters for Slow {
    type Source = AnySource;
    type Catalog = SlowCatalog;

    async fn open_source(&self, config: &Config) -> Result<AnySource, SourceError> {
        AnySource::open(config).await
    }

    fn open_catalog(&self, _config: &Config) -> Result<SlowCatalog, CatalogError> {
        Ok(SlowCatalog {
            inner: LocalCatalog::open(&self.path)?,
            delay: self.delay,
            applying: Arc::clone(&self.applying),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_during_the_sync_of_a_good_edit_does_not_revert_it() {
    let ws = queue_workspace();
    let delay = Duration::from_secs(2);
    let applying = Arc::new(Notify::new());
    let adapters = Slow {
        path: ws.path(".tidemark/catalog.db"),
        delay,
        applying: Arc::clone(&applying),
    };
    let listings = Arc::new(AtomicUsize::new(0));
    let daemon = Daemon::start_with(adapters, WatchOptions::new(ws.config_path()), listings).await;
    daemon.synced().await;
    // The first sync's apply left a notification behind.
    applying.notified().await;

    ws.write("mappings/queues.yaml", &titled("good "));
    tokio::time::timeout(PATIENCE, applying.notified())
        .await
        .expect("the good edit's apply began");
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace("title: .Properties.QueueName", "title: '(.'"),
    );
    wait_for("the broken edit to be refused", || async {
        daemon.metric("tidemark_config_reloads_total{outcome=\"invalid\"}") == Some(1.0)
    })
    .await;
    wait_for("the good edit's sync to end", || async {
        daemon.metric("tidemark_syncs_total{mode=\"remap\",outcome=\"ok\"}") == Some(1.0)
    })
    .await;
    // Long enough for a follow-up sync (an apply takes `delay`) to have written.
    tokio::time::sleep(3 * delay).await;
    let titles = queue_titles(&ws).await;
    assert!(
        titles.len() == 6 && titles.iter().all(|t| t.starts_with("good ")),
        "the good edit was reverted: {titles:?}"
    );
    assert_eq!(
        daemon.metric("tidemark_syncs_total{mode=\"remap\",outcome=\"ok\"}"),
        Some(1.0),
        "a sync ran with the config from before the good edit"
    );
    let error = daemon.shared.readiness().config_error.unwrap_or_default();
    assert!(
        error.contains("queues.yaml:"),
        "the files are still broken, readiness must say so: {error:?}"
    );
    assert_eq!(daemon.metric("tidemark_config_ok"), Some(0.0));
    daemon.stop().await;
}

/// Runs the daemon with applies that take `delay` and a shutdown that fires as the first apply
/// begins. Returns how long (in paused tokio time) the run loop took to return after that.
async fn shut_down_during_a_slow_apply(
    ws: &Workspace,
    delay: Duration,
    grace: Duration,
) -> Duration {
    let applying = Arc::new(Notify::new());
    let adapters = Slow {
        path: ws.path(".tidemark/catalog.db"),
        delay,
        applying: Arc::clone(&applying),
    };
    let mut options = WatchOptions::new(ws.config_path());
    options.shutdown_grace = grace;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fired = Arc::new(std::sync::Mutex::new(None));
    let mark = Arc::clone(&fired);
    let result = watch::run_with(
        adapters,
        options,
        listener,
        Arc::new(Shared::new()),
        async move {
            applying.notified().await;
            *mark.lock().expect("lock") = Some(tokio::time::Instant::now());
        },
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    let fired = fired
        .lock()
        .expect("lock")
        .expect("the shutdown fired during an apply");
    fired.elapsed()
}

#[test]
fn a_sync_that_outlasts_the_interval_does_not_keep_the_loop_awake() {
    let ws = queue_workspace();
    let config = std::fs::read_to_string(ws.config_path()).expect("read config");
    ws.write(
        "tidemark.yaml",
        &format!("{config}resync: {{interval: 30s}}\n"),
    );
    // Paused time advances only while every task waits. A run loop that wakes up again and again
    // once the interval deadline has passed keeps the runtime busy, so the 90 s apply never
    // ends; a watchdog in real time tells that apart from a loop that waits for the sync.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let path = ws.path(".tidemark/catalog.db");
    let options = WatchOptions::new(ws.config_path());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let result = runtime.block_on(async move {
            let shared = Arc::new(Shared::new());
            let adapters = Slow {
                path,
                delay: Duration::from_secs(90),
                applying: Arc::new(Notify::new()),
            };
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let watched = Arc::clone(&shared);
            watch::run_with(adapters, options, listener, shared, async move {
                while !watched.readiness().synced {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
            .await
        });
        let _ = done_tx.send(result);
    });
    let result = done_rx
        .recv_timeout(PATIENCE)
        .expect("the run loop kept itself awake while the sync outlasted the interval");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(entity_titles(&ws).len(), 6);
}

/// The next run: `tidemark apply` on the same workspace.
fn apply_once(ws: &Workspace) {
    let out = Command::new(BIN)
        .args(["apply", "-c"])
        .arg(ws.config_path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run tidemark apply");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_writes_in_flight_then_starts_no_more() {
    let ws = queue_workspace();
    // The slow part stands for a batch in flight when the signal comes.
    let delay = Duration::from_secs(10);
    let grace = Duration::from_secs(25);
    let took = shut_down_during_a_slow_apply(&ws, delay, grace).await;
    assert!(took >= delay && took < grace, "{took:?}");
    assert!(
        owned(&ws).await.is_empty(),
        "the apply started another batch after the shutdown"
    );

    apply_once(&ws);
    assert_eq!(
        queue_titles(&ws).await.len(),
        6,
        "the next run did not finish"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_an_apply_that_outlasts_the_grace_period_and_the_next_run_completes_it() {
    let ws = queue_workspace();
    let delay = Duration::from_secs(600);
    let grace = Duration::from_secs(25);
    let took = shut_down_during_a_slow_apply(&ws, delay, grace).await;
    assert!(took >= grace && took < delay, "{took:?}");
    assert!(
        owned(&ws).await.is_empty(),
        "a stopped apply wrote something"
    );

    apply_once(&ws);
    assert_eq!(queue_titles(&ws).await.len(), 6);
}

// ---- the binary, end to end ----

/// One HTTP GET over a plain socket: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_blocking(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entity_titles(ws: &Workspace) -> Vec<String> {
    // Its own config on the same catalog: the daemon's may hold a broken mapping on purpose.
    ws.write(
        "inspect.yaml",
        &format!("integration: {{identifier: {OWNER}}}\nsource: {{type: snapshot, path: snap}}\ncatalog: {{type: local}}\n"),
    );
    let out = Command::new(BIN)
        .args(["entities", "-c"])
        .arg(ws.path("inspect.yaml"))
        .args(["--blueprint", "queue"])
        .output()
        .expect("run entities");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .map(|e| {
            e["entity"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Kills the daemon if a test fails before it stops.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tidemark watch` on the workspace's config, serving on `port`, logging JSON to `log`.
fn watch_binary(ws: &Workspace, port: u16, log: &Path) -> Process {
    Process(
        Command::new(BIN)
            .args(["watch", "-c"])
            .arg(ws.config_path())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start tidemark watch"),
    )
}

#[test]
fn the_watch_binary_serves_health_applies_an_edit_and_exits_0_on_sigterm() {
    let ws = queue_workspace();
    let port = free_port();
    let log = ws.path("watch.log");
    let mut child = watch_binary(&ws, port, &log);
    wait_blocking("/healthz", || {
        get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    wait_blocking("/readyz", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let (status, metrics) = get(port, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &metrics,
            "tidemark_syncs_total{mode=\"full\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "tidemark_resources_listed{kind=\"AWS::SQS::Queue\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "tidemark_accounts{status=\"ok\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(entity_titles(&ws).len(), 6);

    // A broken edit: /readyz says where, and the catalog keeps its titles.
    let before = entity_titles(&ws);
    ws.write(
        "mappings/queues.yaml",
        &titled_with(r#""X" + (.Properties.QueueName"#),
    );
    let mut readyz = String::new();
    wait_blocking("/readyz to report the broken file", || {
        get(port, "/readyz").is_some_and(|(s, body)| {
            readyz = body;
            s == 503
        })
    });
    assert!(readyz.contains("queues.yaml:"), "{readyz}");
    assert_eq!(entity_titles(&ws), before);

    ws.write("mappings/queues.yaml", &titled("e2e "));
    wait_blocking("the edited titles", || {
        let titles = entity_titles(&ws);
        titles.len() == 6 && titles.iter().all(|t| t.starts_with("e2e "))
    });
    let (_, metrics) = get(port, "/metrics").expect("/metrics");
    assert_eq!(
        metric(&metrics, "tidemark_source_listings_total"),
        Some(1.0),
        "{metrics}"
    );

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut status = None;
    wait_blocking("the daemon to exit", || {
        status = child.0.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    // `--log-format json`: every line is a JSON object, and syncs log inside their span.
    let logged = std::fs::read_to_string(&log).expect("read the log");
    let lines: Vec<Json> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "sync"),
        "no line inside a sync span: {logged}"
    );
}

/// The `tidemark __map-worker` children of process `pid`.
fn map_workers_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // The parent is the second field after the command name, which may hold spaces.
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            parent == Some(pid) && String::from_utf8_lossy(&cmdline).contains("__map-worker")
        })
        .collect()
}

#[test]
fn sigterm_while_the_worker_maps_ends_the_worker_and_exits_0_at_once() {
    let ws = workspace("[mappings/queues.yaml]");
    write_snapshot(&ws, 100);
    // A fraction of a second per item, well inside the evaluation limit: 200 items keep the
    // worker busy for far longer than shutdown may take.
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace(
            "title: .Properties.QueueName",
            "title: '(last(range(2000000)) | tostring) + .Properties.QueueName'",
        ),
    );
    ws.write("mappings/blueprints.json", &blueprints());
    let port = free_port();
    let mut child = Process(
        Command::new(BIN)
            .args(["watch", "-c"])
            .arg(ws.config_path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("RUST_LOG")
            .env("PORT_CLIENT_SECRET", "worker-must-not-see-this")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidemark watch"),
    );
    let pid = child.0.id();
    let mut workers = Vec::new();
    wait_blocking("the mapping worker", || {
        workers = map_workers_of(pid);
        !workers.is_empty()
    });
    wait_blocking("/healthz", || {
        get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    for worker in &workers {
        let environ = std::fs::read(format!("/proc/{worker}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&environ).contains("worker-must-not-see-this"),
            "the mapping worker was given a secret"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get(port, "/readyz").map(|(s, _)| s),
        Some(503),
        "the first sync was over already"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let sent = std::time::Instant::now();
    let mut status = None;
    while status.is_none() && sent.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        status = child.0.try_wait().expect("try_wait");
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM, while the worker maps",
            sent.elapsed()
        )
    });
    assert_eq!(status.code(), Some(0));
    for worker in workers {
        assert!(
            !Path::new(&format!("/proc/{worker}")).exists(),
            "the mapping worker {worker} outlived the daemon"
        );
    }
}

#[test]
fn sigterm_while_the_config_loads_is_a_clean_shutdown() {
    let ws = queue_workspace();
    // Reading a FIFO blocks until something writes to it: the daemon is held in its config load
    // for as long as the test wants.
    let config = std::fs::read_to_string(ws.config_path()).expect("read config");
    std::fs::remove_file(ws.config_path()).expect("remove config");
    let made = Command::new("mkfifo")
        .arg(ws.config_path())
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut child = Process(
        Command::new(BIN)
            .args(["watch", "-c"])
            .arg(ws.config_path())
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidemark watch"),
    );
    // Time to start and reach the config; nothing can make it finish loading meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(200));
    if let Some(status) = child.0.try_wait().expect("try_wait") {
        panic!("SIGTERM during the config load ended the daemon by signal: {status}");
    }
    // Opening the FIFO for writing waits for the daemon's read, which is there.
    std::fs::write(ws.config_path(), config).expect("write the config");
    let mut status = None;
    wait_blocking("the daemon to exit", || {
        status = child.0.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn the_watch_binary_exits_1_on_an_invalid_initial_config() {
    let ws = workspace("[mappings/queues.yaml]");
    ws.write("mappings/queues.yaml", "resources: [");
    let out = Command::new(BIN)
        .args(["watch", "-c"])
        .arg(ws.config_path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("queues.yaml:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_watch_binary_reloads_an_edit_with_the_default_relative_config_path() {
    // `-c tidemark.yaml` run from the config's folder: the file watcher reports absolute paths,
    // and the edit must still count as one of the config's files.
    let ws = queue_workspace();
    let port = free_port();
    let _child = Process(
        Command::new(BIN)
            .current_dir(ws.dir.path())
            .args(["watch", "-c", "tidemark.yaml"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidemark watch"),
    );
    wait_blocking("/readyz", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(entity_titles(&ws).len(), 6);

    ws.write("mappings/queues.yaml", &titled("relative "));
    wait_blocking("the edited titles", || {
        let titles = entity_titles(&ws);
        titles.len() == 6 && titles.iter().all(|t| t.starts_with("relative "))
    });
}

#[test]
fn a_mapping_edit_that_fails_every_item_of_a_kind_is_rejected_naming_the_expression() {
    let ws = queue_workspace();
    let port = free_port();
    let log = ws.path("watch.log");
    let mut child = watch_binary(&ws, port, &log);
    wait_blocking("/readyz", || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let before = entity_titles(&ws);
    assert_eq!(before.len(), 6);

    // Compiles, and gives null for every queue: each would be a mapping error.
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace(
            "identifier: .Properties.Arn",
            "identifier: .Properties.Nope",
        ),
    );
    let mut readyz = String::new();
    wait_blocking("/readyz to report the rejected edit", || {
        get(port, "/readyz").is_some_and(|(s, body)| {
            readyz = body;
            s == 503
        })
    });
    assert!(
        readyz.contains("queues.yaml:9:23: identifier is null")
            && readyz.contains("fail 6 items that the running mappings map"),
        "{readyz}"
    );
    assert_eq!(
        entity_titles(&ws),
        before,
        "the rejected edit changed the catalog"
    );
    let (_, metrics) = get(port, "/metrics").expect("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "tidemark_config_reloads_total{outcome=\"invalid\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    wait_blocking("the daemon to exit", || {
        child.0.try_wait().expect("try_wait").is_some()
    });
    // One warning for the broken expression, with how many items it hit and the first.
    let logged = std::fs::read_to_string(&log).expect("read the log");
    let grouped: Vec<Json> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("mapping error:"))
        })
        .collect();
    assert_eq!(grouped.len(), 1, "{logged}");
    assert_eq!(grouped[0]["level"], "WARN");
    assert_eq!(grouped[0]["fields"]["items"], 6, "{}", grouped[0]);
    assert!(
        grouped[0]["fields"]["first_item"]
            .as_str()
            .is_some_and(|i| i.contains("sqs")),
        "{}",
        grouped[0]
    );
}

#[test]
fn a_listen_address_in_use_is_one_error_line_and_exit_1() {
    let ws = queue_workspace();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let out = Command::new(BIN)
        .args(["watch", "-c"])
        .arg(ws.config_path())
        .args(["--listen", &addr])
        .env_remove("RUST_LOG")
        .output()
        .expect("run tidemark watch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert_eq!(line.matches("Address already in use").count(), 1, "{err}");
    assert!(line.contains(&addr), "{line}");
}
