//! `/healthz`, `/readyz` and `/metrics` on the `--listen` address.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::Metrics;
use crate::adapters::requests::RequestCount;

/// Takes an adapter's request counts (see [`crate::adapters::Source::take_requests`]).
pub type TakeRequests = Box<dyn Fn() -> Vec<RequestCount> + Send + Sync>;

/// What `/readyz` reports.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    /// Why the last config load was not applied (invalid files, or a change that needs a restart).
    pub config_error: Option<String>,
    /// A sync has completed (ok or partial) since the start.
    pub synced: bool,
    /// Why the last sync failed, if it did.
    pub last_sync_error: Option<String>,
}

/// State shared between the run loop and the HTTP handlers. The lock is never held across an
/// `.await`.
pub struct Shared {
    pub metrics: Metrics,
    pub readiness: Mutex<Readiness>,
    /// The current source's and the catalog's request counters, read at every scrape so that the
    /// requests of a long listing show while it runs, not only when it ends.
    requests: Mutex<Counted>,
}

/// Where request counts come from.
#[derive(Default)]
struct Counted {
    aws: Option<TakeRequests>,
    port: Option<TakeRequests>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared::for_shard(None)
    }

    /// The state of a daemon running as `shard`: its metrics carry the shard's labels.
    pub fn for_shard(shard: Option<crate::core::shard::Shard>) -> Shared {
        Shared {
            metrics: Metrics::for_shard(shard),
            readiness: Mutex::new(Readiness::default()),
            requests: Mutex::new(Counted::default()),
        }
    }

    /// Where requests to AWS are counted from now on: the source of the current sync.
    pub fn count_aws_requests(&self, take: TakeRequests) {
        self.counted().aws = Some(take);
    }

    /// Where requests to Port are counted: the catalog.
    pub fn count_port_requests(&self, take: TakeRequests) {
        self.counted().port = Some(take);
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the requests counted since the last call to the metrics.
    pub fn record_requests(&self) {
        let counted = self.counted();
        if let Some(take) = &counted.aws {
            self.metrics.record_aws_requests(&take());
        }
        if let Some(take) = &counted.port {
            self.metrics.record_port_requests(&take());
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Readiness)) {
        f(&mut self
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let r = shared.readiness();
    let mut problems = Vec::new();
    if let Some(e) = &r.config_error {
        problems.push(format!("config: {e}"));
    }
    if !r.synced {
        problems.push(match &r.last_sync_error {
            Some(e) => format!("no sync has completed yet; the last one failed: {e}"),
            None => "no sync has completed yet".to_string(),
        });
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        )
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.record_requests();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}
