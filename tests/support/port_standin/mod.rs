//! A stateful stand-in for Port's REST API on 127.0.0.1, for tests and benchmarks, built from
//! Port's API reference and Port's own clients (see `contract`), never from tidemark's client:
//! tokens (one active token per credential pair), blueprints, entities with `$datasource` = the
//! writer's User-Agent, the blueprint search with its rule grammar, bulk upserts with 207 partial
//! answers, bulk deletes, validation against blueprints, calculated, mirror and aggregation
//! properties in answers, rate-limit headers (reset as an epoch time), request counters, and
//! fault injection. Every request the reference does not allow is refused with Port's 422
//! envelope and recorded, so a test can assert that the client never sent one.
#![allow(dead_code)] // Shared by several test binaries and the benchmark; each uses a part.

pub mod contract;
mod rules;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value as Json, json};

use tidemark::adapters::port::PortConfig;
use tidemark::core::secret::Secret;

use contract::{BlueprintNames, Route};

pub const CLIENT_ID: &str = "standin-client-id";
pub const CLIENT_SECRET: &str = "standin-client-secret";

/// Port's request body limit.
const BODY_LIMIT: usize = 1024 * 1024;
const BULK_UPSERT_MAX: usize = 20;
const BULK_DELETE_MAX: usize = 100;
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// An entity as the stand-in stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntity {
    pub blueprint: String,
    pub identifier: String,
    /// `identifier`, `title`, `icon`, `team`, `properties`, `relations`.
    pub body: Map<String, Json>,
    /// The User-Agent of the request that last wrote it.
    pub datasource: String,
    /// How many writes committed it (creates and updates).
    pub writes: u64,
}

/// Requests received, by kind; faulted requests count too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub reads: usize,
    pub writes: usize,
    pub auth: usize,
    /// Entity writes committed (one per entity per bulk item).
    pub entity_writes: usize,
}

/// Answers that break Port's contract, to test that the client refuses to trust them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// A 200 with an HTML page, as a proxy in front of Port might send.
    Html,
    /// A 200 whose JSON is cut off.
    Truncated,
    /// A 200 with `ok: false` and nothing else.
    NotOk,
    /// Search results claim another blueprint.
    OtherBlueprint,
    /// Bulk results with indexes that do not match the request; for a bulk delete, a confirmed
    /// identifier that was not in the request.
    BadIndexes,
    /// Page cursors that go round in a circle (a → b → a), each page the same.
    CursorLoop,
}

/// What to break, and how. All off by default.
#[derive(Clone, Debug)]
pub struct Faults {
    pub latency: Duration,
    /// Answer 503 (without committing) to every nth write request.
    pub fail_every_nth_write: Option<usize>,
    /// Answer the next n requests of any kind with 429 and `Retry-After: retry_after`.
    pub burst_429: usize,
    pub retry_after: String,
    /// Answer the next n requests with 503.
    pub burst_503: usize,
    /// Commit the next n writes, then drop the connection instead of answering.
    pub drop_after_commit: usize,
    /// Include `$datasource` in search answers (Port does not document that it does).
    pub expose_datasource: bool,
    /// `expiresIn` of new tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// `expiresIn` exactly as sent, instead of `token_lifetime_secs` (for values Port should
    /// never send).
    pub token_expires_in: Option<Json>,
    /// Answer searches with every field, as if `include` had not been sent (the computed
    /// properties included).
    pub ignore_include: bool,
    /// The `tokenType` of new tokens; requests must send `Authorization: <tokenType> <token>`.
    pub token_type: String,
    /// Headers sent with every answer, replacing the stand-in's own of the same name.
    pub headers: Vec<(&'static str, String)>,
    /// Requests per 5-minute window before 429s.
    pub rate_limit: usize,
    /// Largest request body accepted before 413 (Port's is 1 MiB).
    pub body_limit: usize,
    /// Length of the rate-limit window (Port's is 5 minutes).
    pub rate_window: Duration,
    /// Send `x-ratelimit-reset` as UTC epoch seconds, as Port's reference documents it (the
    /// default); `false` sends the seconds left, as Port's live docs page describes it.
    pub epoch_reset: bool,
    /// The `ok` of a 207 bulk answer. Port's schema makes it a plain boolean; `false` (the
    /// default) is the answer a client is most likely to misread.
    pub partial_bulk_ok: bool,
    /// Fail this many entities (the last ones of the request) of the next bulk upsert into this
    /// blueprint with a per-entity 422, without committing them.
    pub reject_in_next_bulk: Option<(String, usize)>,
    pub hostile_search: Option<Hostile>,
    /// Bulk upserts.
    pub hostile_bulk: Option<Hostile>,
    /// The ownership listing (`datasource-entities`).
    pub hostile_listing: Option<Hostile>,
    /// Bulk deletes; Html, Truncated and NotOk answer without deleting.
    pub hostile_delete: Option<Hostile>,
    /// Error answers repeat the request's Authorization header and body in their message, the way
    /// a verbose proxy or a debugging gateway might.
    pub echo_in_errors: bool,
    /// Answer entities with the keys of every object in reverse order of how they were written
    /// (JSON does not promise an order; a client must not care).
    pub reverse_keys: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            fail_every_nth_write: None,
            burst_429: 0,
            retry_after: "1".into(),
            burst_503: 0,
            drop_after_commit: 0,
            expose_datasource: false,
            token_lifetime_secs: 10_800,
            token_expires_in: None,
            ignore_include: false,
            token_type: "Bearer".into(),
            headers: Vec::new(),
            rate_limit: 1_000_000,
            rate_window: RATE_WINDOW,
            body_limit: BODY_LIMIT,
            epoch_reset: true,
            partial_bulk_ok: false,
            reject_in_next_bulk: None,
            echo_in_errors: false,
            hostile_search: None,
            hostile_bulk: None,
            hostile_listing: None,
            hostile_delete: None,
            reverse_keys: false,
        }
    }
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub user_agent: String,
    pub status: u16,
    /// The request body, as JSON where it parsed.
    pub body: Json,
}

/// A request the stand-in refused because Port's reference does not allow its shape.
#[derive(Clone, Debug)]
pub struct Refused {
    pub method: String,
    pub path: String,
    pub message: String,
}

/// The one active token of the stand-in's credential pair.
struct ActiveToken {
    value: String,
    expires: Instant,
}

struct Inner {
    blueprints: BTreeMap<String, Json>,
    entities: BTreeMap<(String, String), StoredEntity>,
    token: Option<ActiveToken>,
    next_token: u64,
    faults: Faults,
    counters: Counters,
    writes_seen: usize,
    window_start: Instant,
    window_count: usize,
    log: Vec<Logged>,
    refused: Vec<Refused>,
    undeclared: BTreeSet<String>,
    expect_refusals: bool,
    validators: validation::Validators,
}

/// A running stand-in. Clones share the same server and state.
///
/// When the last clone is dropped, a test that has not already failed fails if tidemark sent a
/// request Port's reference does not allow (see [`PortStandIn::refused`]), unless the test said
/// it expects that with [`PortStandIn::expect_refusals`].
#[derive(Clone)]
pub struct PortStandIn {
    url: String,
    inner: Arc<Mutex<Inner>>,
    _check: Arc<WellFormedCheck>,
}

/// Checks, when dropped, that every request the stand-in saw was well formed.
struct WellFormedCheck {
    inner: Arc<Mutex<Inner>>,
}

impl Drop for WellFormedCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.expect_refusals {
            return;
        }
        assert!(
            inner.refused.is_empty(),
            "the Port stand-in refused requests as Port would: {:#?}",
            inner.refused
        );
        assert!(
            inner.undeclared.is_empty(),
            "query parameters their routes do not declare: {:?}",
            inner.undeclared
        );
    }
}

enum Outcome {
    Reply(StatusCode, Json, Vec<(&'static str, String)>),
    Raw(StatusCode, String),
    Drop,
}

impl PortStandIn {
    /// Starts a stand-in on the current tokio runtime.
    pub async fn start() -> PortStandIn {
        let inner = Arc::new(Mutex::new(Inner {
            blueprints: BTreeMap::new(),
            entities: BTreeMap::new(),
            token: None,
            next_token: 0,
            faults: Faults::default(),
            counters: Counters::default(),
            writes_seen: 0,
            window_start: Instant::now(),
            window_count: 0,
            log: Vec::new(),
            refused: Vec::new(),
            undeclared: BTreeSet::new(),
            expect_refusals: false,
            validators: validation::Validators::default(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PortStandIn {
            url: format!("http://{addr}"),
            _check: Arc::new(WellFormedCheck {
                inner: Arc::clone(&inner),
            }),
            inner,
        }
    }

    /// Starts a stand-in on its own thread and runtime, for tests that run the binary.
    pub fn start_in_thread() -> PortStandIn {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let standin = PortStandIn::start().await;
                let _ = tx.send(standin);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("stand-in started")
    }

    /// `http://127.0.0.1:PORT`, the `baseUrl` to configure.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A config with the credentials the stand-in accepts.
    pub fn config(&self) -> PortConfig {
        PortConfig {
            base_url: self.url.clone(),
            client_id: Secret::new(CLIENT_ID),
            client_secret: Secret::new(CLIENT_SECRET),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    pub fn reset_counters(&self) {
        self.lock().counters = Counters::default();
    }

    /// Changes the fault settings.
    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.lock().faults);
    }

    /// Revokes the active token, as if it had expired on Port's side.
    pub fn expire_tokens(&self) {
        self.lock().token = None;
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Requests refused for a shape Port's reference does not allow, in order.
    pub fn refused(&self) -> Vec<Refused> {
        self.lock().refused.clone()
    }

    /// Query parameters sent to a route that does not declare them (`METHOD route: name`).
    pub fn undeclared_params(&self) -> Vec<String> {
        self.lock().undeclared.iter().cloned().collect()
    }

    /// For a test that sends malformed requests on purpose: the check when the stand-in is
    /// dropped is skipped.
    pub fn expect_refusals(&self) {
        self.lock().expect_refusals = true;
    }

    /// Fails the test when any request so far had a shape Port refuses or a parameter its route
    /// does not declare.
    pub fn assert_every_request_was_well_formed(&self) {
        let refused = self.refused();
        assert!(
            refused.is_empty(),
            "the stand-in refused requests as Port would: {refused:#?}"
        );
        let undeclared = self.undeclared_params();
        assert!(
            undeclared.is_empty(),
            "query parameters their routes do not declare: {undeclared:?}"
        );
    }

    /// Stores a blueprint as is (no checks), with Port's meta fields.
    pub fn add_blueprint(&self, blueprint: Json) {
        let id = blueprint["identifier"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.lock().blueprints.insert(id, with_meta(blueprint));
    }

    pub fn blueprint(&self, id: &str) -> Option<Json> {
        self.lock().blueprints.get(id).cloned()
    }

    /// Stores an entity as if `datasource` had written it, without validation.
    pub fn seed_entity(&self, blueprint: &str, entity: Json, datasource: &str) {
        let mut body = entity.as_object().cloned().unwrap_or_default();
        body.remove("blueprint");
        let identifier = body["identifier"].as_str().unwrap_or_default().to_string();
        self.lock().entities.insert(
            (blueprint.to_string(), identifier.clone()),
            StoredEntity {
                blueprint: blueprint.to_string(),
                identifier,
                body,
                datasource: datasource.to_string(),
                writes: 0,
            },
        );
    }

    pub fn entity(&self, blueprint: &str, identifier: &str) -> Option<StoredEntity> {
        self.lock()
            .entities
            .get(&(blueprint.to_string(), identifier.to_string()))
            .cloned()
    }

    pub fn entities(&self) -> Vec<StoredEntity> {
        self.lock().entities.values().cloned().collect()
    }

    /// Every entity as comparable values, ordered by key: blueprint, identifier, body and
    /// `$datasource` (its owner).
    pub fn state(&self) -> Vec<(String, String, Json, String)> {
        self.entities()
            .into_iter()
            .map(|e| {
                (
                    e.blueprint,
                    e.identifier,
                    Json::Object(e.body),
                    e.datasource,
                )
            })
            .collect()
    }
}

/// A blueprint as Port answers it: what was sent plus who made it and when.
fn with_meta(mut blueprint: Json) -> Json {
    if let Some(obj) = blueprint.as_object_mut() {
        for key in ["createdAt", "updatedAt"] {
            obj.entry(key)
                .or_insert_with(|| json!("2026-01-01T00:00:00.000Z"));
        }
        for key in ["createdBy", "updatedBy"] {
            obj.entry(key).or_insert_with(|| json!("standin"));
        }
    }
    blueprint
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let user_agent = header_text(&req, header::USER_AGENT);
    let auth = header_text(&req, header::AUTHORIZATION);
    let latency = inner
        .lock()
        .map(|i| i.faults.latency)
        .unwrap_or(Duration::ZERO);
    let bytes = axum::body::to_bytes(req.into_body(), 8 * BODY_LIMIT)
        .await
        .unwrap_or_default();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (outcome, headers) = {
        let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
        let request = Incoming {
            method: &method,
            path: &path,
            query: &query,
            user_agent: &user_agent,
            auth: &auth,
            body: &bytes,
        };
        let mut outcome = inner.process(&request);
        if inner.faults.echo_in_errors
            && let Outcome::Reply(status, body, _) = &mut outcome
            && status.as_u16() >= 400
        {
            body["message"] = json!(format!(
                "{}; request: Authorization: {auth}; body: {}",
                body["message"].as_str().unwrap_or_default(),
                String::from_utf8_lossy(&bytes)
            ));
        }
        let status = match &outcome {
            Outcome::Reply(s, _, _) | Outcome::Raw(s, _) => s.as_u16(),
            Outcome::Drop => 0,
        };
        inner.log.push(Logged {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            user_agent: user_agent.clone(),
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Json::Null),
        });
        (outcome, inner.rate_headers())
    };
    let mut response = match outcome {
        Outcome::Reply(status, body, extra) => {
            let mut r = Response::new(Body::from(body.to_string()));
            *r.status_mut() = status;
            for (name, value) in extra {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Outcome::Raw(status, text) => {
            let mut r = Response::new(Body::from(text));
            *r.status_mut() = status;
            r
        }
        // The write is committed; the answer is lost on the way back.
        Outcome::Drop => Response::new(Body::from_stream(BrokenBody)),
    };
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

fn header_text(req: &Request, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A response body that fails at once, so the server drops the connection mid-answer.
struct BrokenBody;

impl futures_core::Stream for BrokenBody {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by fault injection",
        ))))
    }
}

struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    user_agent: &'a str,
    auth: &'a str,
    body: &'a [u8],
}

impl Incoming<'_> {
    fn pairs(&self) -> Vec<(String, String)> {
        query_pairs(self.query)
    }

    fn flag(&self, name: &str) -> bool {
        self.pairs().iter().any(|(k, v)| k == name && v == "true")
    }
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"ok": false, "error": code, "message": message.into()}),
        Vec::new(),
    )
}

fn ok(body: Json) -> Outcome {
    Outcome::Reply(StatusCode::OK, body, Vec::new())
}

fn not_found(what: &str) -> Outcome {
    error(404, "not_found", format!("{what} was not found"))
}

/// Which route a request is for, by method and decoded path segments.
fn route_of(method: &Method, segs: &[&str]) -> Option<Route> {
    let route = match (method.as_str(), segs) {
        ("POST", ["v1", "auth", "access_token"]) => Route::Token,
        ("GET", ["v1", "blueprints"]) => Route::ListBlueprints,
        ("POST", ["v1", "blueprints"]) => Route::CreateBlueprint,
        ("POST", ["v1", "blueprints", "entities", "datasource-entities"]) => {
            Route::DatasourceEntities
        }
        ("GET", ["v1", "blueprints", _]) => Route::GetBlueprint,
        ("PATCH", ["v1", "blueprints", _]) => Route::PatchBlueprint,
        ("POST", ["v1", "blueprints", _, "entities", "bulk"]) => Route::BulkUpsert,
        ("POST", ["v1", "blueprints", _, "entities", "search"]) => Route::Search,
        ("POST", ["v1", "blueprints", _, "bulk", "entities", "delete"]) => Route::BulkDelete,
        ("DELETE", ["v1", "blueprints", _, "entities", _]) => Route::DeleteEntity,
        ("GET", ["v1", "blueprints", _, "entities", _]) => Route::GetEntity,
        _ => return None,
    };
    Some(route)
}

fn is_read(route: Route) -> bool {
    matches!(
        route,
        Route::ListBlueprints
            | Route::GetBlueprint
            | Route::Search
            | Route::DatasourceEntities
            | Route::GetEntity
    )
}

impl Inner {
    fn rate_headers(&self) -> Vec<(&'static str, String)> {
        let left = self
            .faults
            .rate_window
            .saturating_sub(self.window_start.elapsed());
        let reset = if self.faults.epoch_reset {
            // Rounded up, so a client that waits until then finds a fresh window.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            ((now + left).as_secs_f64().ceil() as u64).to_string()
        } else {
            left.as_millis().div_ceil(1000).max(1).to_string()
        };
        let mut headers = vec![
            (
                "x-ratelimit-period",
                self.faults.rate_window.as_secs().to_string(),
            ),
            ("x-ratelimit-limit", self.faults.rate_limit.to_string()),
            (
                "x-ratelimit-remaining",
                self.faults
                    .rate_limit
                    .saturating_sub(self.window_count)
                    .to_string(),
            ),
            ("x-ratelimit-reset", reset),
        ];
        for (name, value) in &self.faults.headers {
            headers.retain(|(own, _)| own != name);
            headers.push((name, value.clone()));
        }
        headers
    }

    /// Counts the request, applies rate limits and injected faults, checks credentials, then
    /// routes it.
    fn process(&mut self, req: &Incoming<'_>) -> Outcome {
        let segments: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = route_of(req.method, &segs);
        match route {
            Some(Route::Token) => self.counters.auth += 1,
            Some(r) if is_read(r) => self.counters.reads += 1,
            _ => self.counters.writes += 1,
        }

        if self.window_start.elapsed() >= self.faults.rate_window {
            self.window_start = Instant::now();
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.window_count > self.faults.rate_limit {
            return error(429, "rate_limited", "too many requests");
        }
        if self.faults.burst_429 > 0 {
            self.faults.burst_429 -= 1;
            return Outcome::Reply(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error": "rate_limited", "message": "slow down"}),
                vec![("retry-after", self.faults.retry_after.clone())],
            );
        }
        if self.faults.burst_503 > 0 {
            self.faults.burst_503 -= 1;
            return Outcome::Raw(StatusCode::SERVICE_UNAVAILABLE, "<html>503</html>".into());
        }
        let is_write = route.is_some_and(|r| r != Route::Token && !is_read(r));
        if is_write {
            self.writes_seen += 1;
            if let Some(n) = self.faults.fail_every_nth_write
                && n > 0
                && self.writes_seen.is_multiple_of(n)
            {
                return Outcome::Raw(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "<html>upstream unavailable</html>".into(),
                );
            }
        }
        if req.body.len() > self.faults.body_limit {
            return error(
                413,
                "request_too_large",
                "Request body is too large (limit is 1MiB)",
            );
        }
        let Some(route) = route else {
            return not_found(&format!("route {} {}", req.method, req.path));
        };
        if route != Route::Token && !self.is_authorized(req.auth) {
            return error(401, "unauthorized", "invalid or expired token");
        }
        let body: Json = if req.body.is_empty() {
            Json::Null
        } else {
            match serde_json::from_slice(req.body) {
                Ok(b) => b,
                Err(e) => return self.refuse(req, format!("body is not JSON: {e}")),
            }
        };
        match contract::check_params(route, &req.pairs()) {
            Ok(undeclared) => {
                for name in undeclared {
                    self.undeclared
                        .insert(format!("{} {route:?}: {name}", req.method));
                }
            }
            Err(refusal) => return self.refuse(req, refusal),
        }
        let outcome = match self.route(req, route, &segs, &body) {
            Ok(outcome) => outcome,
            Err(refusal) => return self.refuse(req, refusal),
        };
        if is_write
            && self.faults.drop_after_commit > 0
            && let Outcome::Reply(status, _, _) = &outcome
            && status.is_success()
        {
            self.faults.drop_after_commit -= 1;
            return Outcome::Drop;
        }
        outcome
    }

    /// Port's 422 for a request whose shape its reference does not allow, recorded.
    fn refuse(&mut self, req: &Incoming<'_>, message: String) -> Outcome {
        self.refused.push(Refused {
            method: req.method.to_string(),
            path: req.path.to_string(),
            message: message.clone(),
        });
        error(422, "invalid_request", message)
    }

    fn is_authorized(&self, auth: &str) -> bool {
        let Some(token) = auth
            .strip_prefix(self.faults.token_type.as_str())
            .and_then(|rest| rest.strip_prefix(' '))
        else {
            return false;
        };
        self.token
            .as_ref()
            .is_some_and(|t| t.value == token && t.expires > Instant::now())
    }

    fn route(
        &mut self,
        req: &Incoming<'_>,
        route: Route,
        segs: &[&str],
        body: &Json,
    ) -> Result<Outcome, contract::Refusal> {
        let segment = |i: usize| segs.get(i).copied().unwrap_or_default();
        Ok(match route {
            Route::Token => {
                contract::check_token_body(body)?;
                self.issue_token(body)
            }
            Route::ListBlueprints => {
                let list: Vec<Json> = self.blueprints.values().cloned().collect();
                ok(json!({"ok": true, "blueprints": list}))
            }
            Route::GetBlueprint => match self.blueprints.get(segment(2)) {
                Some(b) => ok(json!({"ok": true, "blueprint": b})),
                None => not_found(&format!("blueprint {}", segment(2))),
            },
            Route::CreateBlueprint => {
                contract::check_blueprint_create(body)?;
                self.create_blueprint(body)
            }
            Route::PatchBlueprint => {
                contract::check_blueprint_patch(body)?;
                self.patch_blueprint(segment(2), body)
            }
            Route::Search => {
                let Some(blueprint) = self.blueprints.get(segment(2)) else {
                    return Ok(not_found(&format!("blueprint {}", segment(2))));
                };
                let request = contract::check_search_body(body, &BlueprintNames::of(blueprint))?;
                self.search(segment(2), &request)
            }
            Route::DatasourceEntities => {
                let (prefix, suffix, limit, from) = contract::check_datasource_body(body)?;
                self.datasource_entities(&prefix, &suffix, limit, from.as_deref())
            }
            Route::BulkUpsert => {
                let items = contract::check_bulk_upsert_body(body, BULK_UPSERT_MAX)?;
                self.bulk_upsert(req, segment(2), items)
            }
            Route::BulkDelete => {
                let ids = contract::check_bulk_delete_body(body, BULK_DELETE_MAX)?;
                self.bulk_delete(req, segment(2), ids)
            }
            Route::DeleteEntity => self.delete_one(req, segment(2), segment(4)),
            Route::GetEntity => {
                match self
                    .entities
                    .get(&(segment(2).to_string(), segment(4).to_string()))
                {
                    Some(e) => ok(json!({"ok": true, "entity": self.render(e)})),
                    None => not_found(&format!("entity {}", segment(4))),
                }
            }
        })
    }

    /// One active token per credential pair: while it is valid, asking again returns it, with
    /// the time it has left.
    fn issue_token(&mut self, body: &Json) -> Outcome {
        if body["clientId"] != CLIENT_ID || body["clientSecret"] != CLIENT_SECRET {
            return error(401, "invalid_client", "bad client id or secret");
        }
        let now = Instant::now();
        let lifetime = Duration::from_secs(self.faults.token_lifetime_secs);
        let active = match self.token.take() {
            Some(t) if t.expires > now => t,
            _ => {
                self.next_token += 1;
                ActiveToken {
                    value: format!("standin-token-{}", self.next_token),
                    expires: now + lifetime,
                }
            }
        };
        let left = active.expires.saturating_duration_since(now).as_secs();
        let expires_in = self
            .faults
            .token_expires_in
            .clone()
            .unwrap_or_else(|| json!(left.max(1)));
        let value = active.value.clone();
        self.token = Some(active);
        ok(json!({"ok": true, "accessToken": value,
                  "expiresIn": expires_in, "tokenType": self.faults.token_type}))
    }

    fn check_relation_targets(&self, blueprint: &Json) -> Result<(), Outcome> {
        if let Some(rels) = blueprint.get("relations").and_then(Json::as_object) {
            for (name, def) in rels {
                let target = def["target"].as_str().unwrap_or_default();
                if !self.blueprints.contains_key(target)
                    && blueprint["identifier"].as_str() != Some(target)
                {
                    return Err(error(
                        422,
                        "invalid_blueprint",
                        format!("relation {name} targets blueprint {target}, which does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Port documents no 409 here: a duplicate identifier is one more 422.
    fn create_blueprint(&mut self, body: &Json) -> Outcome {
        let id = body["identifier"].as_str().unwrap_or_default();
        if self.blueprints.contains_key(id) {
            return error(
                422,
                "blueprint_already_exists",
                format!("blueprint with identifier \"{id}\" already exists"),
            );
        }
        if let Err(e) = self.check_relation_targets(body) {
            return e;
        }
        let stored = with_meta(body.clone());
        self.blueprints.insert(id.to_string(), stored.clone());
        Outcome::Reply(
            StatusCode::CREATED,
            json!({"ok": true, "blueprint": stored}),
            Vec::new(),
        )
    }

    /// Top-level keys of the body replace the blueprint's (the reference does not say whether
    /// nested maps merge, so a client must send them whole).
    fn patch_blueprint(&mut self, id: &str, body: &Json) -> Outcome {
        let Some(mut current) = self.blueprints.get(id).cloned() else {
            return not_found(&format!("blueprint {id}"));
        };
        if let (Some(cur), Some(patch)) = (current.as_object_mut(), body.as_object()) {
            for (k, v) in patch {
                cur.insert(k.clone(), v.clone());
            }
        }
        if let Err(e) = self.check_relation_targets(&current) {
            return e;
        }
        self.blueprints.insert(id.to_string(), current.clone());
        ok(json!({"ok": true, "blueprint": current}))
    }

    fn bulk_upsert(&mut self, req: &Incoming<'_>, bp: &str, items: &[Json]) -> Outcome {
        if !self.blueprints.contains_key(bp) {
            return not_found(&format!("blueprint {bp}"));
        }
        match self.faults.hostile_bulk {
            Some(Hostile::Html) => {
                return Outcome::Raw(
                    StatusCode::OK,
                    "<html><body>maintenance</body></html>".into(),
                );
            }
            Some(Hostile::Truncated) => {
                return Outcome::Raw(
                    StatusCode::OK,
                    r#"{"ok": true, "entities": [{"ident"#.into(),
                );
            }
            Some(Hostile::NotOk) => return ok(json!({"ok": false, "error": "internal"})),
            _ => {}
        }
        let options = WriteOptions {
            upsert: req.flag("upsert"),
            merge: req.flag("merge"),
            create_missing: req.flag("create_missing_related_entities"),
            validation_only: req.flag("validation_only"),
        };
        let rejects = match &self.faults.reject_in_next_bulk {
            Some((target, count)) if target == bp => {
                let count = *count;
                self.faults.reject_in_next_bulk = None;
                count
            }
            _ => 0,
        };
        let rejects_from = items.len().saturating_sub(rejects);
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let result = if index >= rejects_from {
                Err((
                    422,
                    "invalid_entity".to_string(),
                    "rejected by fault injection".to_string(),
                ))
            } else {
                self.upsert_one(bp, item, options, req.user_agent)
            };
            match result {
                Ok((identifier, created)) => {
                    done.push(json!({"identifier": identifier, "index": index, "created": created}))
                }
                Err((status, code, message)) => errors.push(json!({
                    "identifier": item.get("identifier").and_then(Json::as_str).unwrap_or("unknown"),
                    "index": index, "statusCode": status, "error": code, "message": message})),
            }
        }
        if self.faults.hostile_bulk == Some(Hostile::BadIndexes) {
            for d in done.iter_mut() {
                let i = d["index"].as_u64().unwrap_or(0);
                d["index"] = json!(i + 1);
            }
        }
        let (status, ok_flag) = if errors.is_empty() {
            (StatusCode::OK, true)
        } else {
            (StatusCode::MULTI_STATUS, self.faults.partial_bulk_ok)
        };
        Outcome::Reply(
            status,
            json!({"ok": ok_flag, "entities": done, "errors": errors}),
            Vec::new(),
        )
    }

    /// One entity of a bulk upsert, validated like Port and committed on success.
    fn upsert_one(
        &mut self,
        bp: &str,
        item: &Json,
        options: WriteOptions,
        user_agent: &str,
    ) -> Result<(String, bool), (u16, String, String)> {
        let invalid = |m: String| (422u16, "invalid_entity".to_string(), m);
        let obj = item.as_object().cloned().unwrap_or_default();
        let identifier = obj
            .get("identifier")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid("an entity needs an identifier".into()))?
            .to_string();
        let key = (bp.to_string(), identifier.clone());
        let existing = self.entities.get(&key).cloned();
        if existing.is_some() && !options.upsert {
            return Err((
                409,
                "identifier_taken".into(),
                format!("entity \"{identifier}\" already exists"),
            ));
        }
        let next = merged(existing.as_ref(), &obj, options.merge, &identifier);
        let blueprint = self.blueprints.get(bp).cloned().unwrap_or(Json::Null);
        let problems = validation::problems(&mut self.validators, &blueprint, &next);
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let mut to_create = Vec::new();
        for (_, target_bp, target) in validation::relation_targets(&blueprint, &next) {
            let target_key = (target_bp, target);
            if target_key == key || self.entities.contains_key(&target_key) {
                continue;
            }
            if !options.create_missing {
                return Err((
                    404,
                    "not_found".into(),
                    format!(
                        "related entity \"{}\" of blueprint \"{}\" was not found",
                        target_key.1, target_key.0
                    ),
                ));
            }
            to_create.push(target_key);
        }
        if options.validation_only {
            return Ok((identifier, existing.is_none()));
        }
        for (tbp, tid) in to_create {
            let mut body = Map::new();
            body.insert("identifier".into(), json!(tid));
            self.entities.insert(
                (tbp.clone(), tid.clone()),
                StoredEntity {
                    blueprint: tbp,
                    identifier: tid,
                    body,
                    datasource: user_agent.to_string(),
                    writes: 1,
                },
            );
        }
        let writes = existing.as_ref().map(|e| e.writes).unwrap_or(0) + 1;
        self.entities.insert(
            key,
            StoredEntity {
                blueprint: bp.to_string(),
                identifier: identifier.clone(),
                body: next,
                datasource: user_agent.to_string(),
                writes,
            },
        );
        self.counters.entity_writes += 1;
        Ok((identifier, existing.is_none()))
    }

    /// An entity as a search or GET answers it: the stored fields, Port's meta fields, and the
    /// blueprint's calculated, mirror and aggregation properties under `properties`.
    fn render(&self, e: &StoredEntity) -> Json {
        let mut out = e.body.clone();
        out.insert("blueprint".into(), json!(e.blueprint));
        out.insert("createdAt".into(), json!("2026-01-01T00:00:00.000Z"));
        out.insert("updatedAt".into(), json!("2026-01-01T00:00:00.000Z"));
        out.insert("createdBy".into(), json!("standin"));
        out.insert("updatedBy".into(), json!("standin"));
        let computed = self.computed_properties(e);
        if !computed.is_empty() {
            let props = out
                .entry("properties")
                .or_insert_with(|| Json::Object(Map::new()));
            if let Some(props) = props.as_object_mut() {
                props.extend(computed);
            }
        }
        if self.faults.expose_datasource {
            out.insert("$datasource".into(), json!(e.datasource));
        }
        let mut out = Json::Object(out);
        if self.faults.reverse_keys {
            reverse_keys(&mut out);
        }
        out
    }

    fn computed_properties(&self, e: &StoredEntity) -> Map<String, Json> {
        let mut out = Map::new();
        let Some(blueprint) = self.blueprints.get(&e.blueprint) else {
            return out;
        };
        let defs = |key: &str| {
            blueprint
                .get(key)
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default()
        };
        for (name, def) in defs("calculationProperties") {
            out.insert(name, validation::calculated_value(&def, &e.identifier));
        }
        for (name, def) in defs("mirrorProperties") {
            out.insert(
                name,
                self.mirror(e, def["path"].as_str().unwrap_or_default()),
            );
        }
        for (name, def) in defs("aggregationProperties") {
            let target = def["target"].as_str().unwrap_or_default();
            let count = self
                .entities
                .values()
                .filter(|other| other.blueprint == target && self.points_at(other, e))
                .count();
            out.insert(name, json!(count));
        }
        out
    }

    /// A mirror property: follow the path's relations, then read the last segment (a property,
    /// `$title` or `$identifier`) of the entity reached.
    fn mirror(&self, e: &StoredEntity, path: &str) -> Json {
        let mut segments: Vec<&str> = path.split('.').collect();
        let Some(last) = segments.pop() else {
            return Json::Null;
        };
        let mut current = e.clone();
        for relation in segments {
            let target_bp = self
                .blueprints
                .get(&current.blueprint)
                .and_then(|b| b.pointer(&format!("/relations/{relation}/target")))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(id) = current
                .body
                .get("relations")
                .and_then(|r| r.get(relation))
                .and_then(Json::as_str)
            else {
                return Json::Null;
            };
            match self.entities.get(&(target_bp, id.to_string())) {
                Some(next) => current = next.clone(),
                None => return Json::Null,
            }
        }
        match last {
            "$identifier" => json!(current.identifier),
            "$title" => current.body.get("title").cloned().unwrap_or(Json::Null),
            name => current
                .body
                .get("properties")
                .and_then(|p| p.get(name))
                .cloned()
                .unwrap_or(Json::Null),
        }
    }

    /// Whether `from` has a relation pointing at `to`.
    fn points_at(&self, from: &StoredEntity, to: &StoredEntity) -> bool {
        let blueprint = self
            .blueprints
            .get(&from.blueprint)
            .cloned()
            .unwrap_or(Json::Null);
        validation::relation_targets(&blueprint, &from.body)
            .iter()
            .any(|(_, bp, id)| *bp == to.blueprint && *id == to.identifier)
    }

    fn search(&self, bp: &str, request: &contract::SearchRequest) -> Outcome {
        let from = request
            .from
            .as_deref()
            .and_then(|c| c.strip_prefix("cursor-"))
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let blueprint = self.blueprints.get(bp).cloned().unwrap_or(Json::Null);
        let title_of = |target_bp: &str, id: &str| -> Option<String> {
            self.entities
                .get(&(target_bp.to_string(), id.to_string()))
                .and_then(|e| e.body.get("title"))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        let target_of = |relation: &str| -> Option<String> {
            blueprint
                .pointer(&format!("/relations/{relation}/target"))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        let mut matched = Vec::new();
        for e in self.entities.values().filter(|e| e.blueprint == bp) {
            let rendered = self.render(e);
            let related_to = |other_bp: &str, other_id: &str| -> bool {
                self.entities
                    .get(&(other_bp.to_string(), other_id.to_string()))
                    .is_some_and(|other| self.points_at(e, other) || self.points_at(other, e))
            };
            let view = rules::View {
                rendered: &rendered,
                datasource: &e.datasource,
                title_of: &title_of,
                target_of: &target_of,
                related_to: &related_to,
            };
            if request
                .query
                .as_ref()
                .is_none_or(|q| rules::matches(q, &view))
            {
                matched.push(rendered);
            }
        }
        let page: Vec<Json> = matched
            .iter()
            .skip(from)
            .take(request.limit)
            .map(|rendered| {
                let mut rendered = if self.faults.ignore_include {
                    rendered.clone()
                } else {
                    select_fields(rendered, request)
                };
                if self.faults.hostile_search == Some(Hostile::OtherBlueprint) {
                    rendered["blueprint"] = json!("someOtherBlueprint");
                }
                rendered
            })
            .collect();
        let mut answer = json!({"ok": true, "entities": page});
        if self.faults.hostile_search == Some(Hostile::CursorLoop) {
            answer["next"] = looping_cursor(request.from.as_deref());
        } else if from + request.limit < matched.len() {
            answer["next"] = json!(format!("cursor-{}", from + request.limit));
        }
        match self.faults.hostile_search {
            Some(Hostile::Html) => Outcome::Raw(StatusCode::OK, "<html>login</html>".into()),
            Some(Hostile::Truncated) => {
                Outcome::Raw(StatusCode::OK, r#"{"ok": true, "entities": [{"#.into())
            }
            Some(Hostile::NotOk) => ok(json!({"ok": false, "error": "internal"})),
            _ => ok(answer),
        }
    }

    fn datasource_entities(
        &self,
        prefix: &str,
        suffix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Outcome {
        let from = cursor
            .and_then(|c| c.strip_prefix("cursor-"))
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let matched: Vec<&StoredEntity> = self
            .entities
            .values()
            .filter(|e| e.datasource.starts_with(prefix) && e.datasource.ends_with(suffix))
            .collect();
        let page: Vec<Json> = matched
            .iter()
            .skip(from)
            .take(limit)
            .map(|e| json!({"identifier": e.identifier, "blueprint": e.blueprint}))
            .collect();
        let next = if self.faults.hostile_listing == Some(Hostile::CursorLoop) {
            looping_cursor(cursor)
        } else if from + limit < matched.len() {
            json!(format!("cursor-{}", from + limit))
        } else {
            Json::Null
        };
        match self.faults.hostile_listing {
            Some(Hostile::Html) => Outcome::Raw(StatusCode::OK, "<html>login</html>".into()),
            Some(Hostile::Truncated) => {
                Outcome::Raw(StatusCode::OK, r#"{"ok": true, "entities": [{"#.into())
            }
            Some(Hostile::NotOk) => ok(json!({"ok": false, "error": "internal"})),
            _ => ok(json!({"ok": true, "entities": page, "next": next})),
        }
    }

    /// Entities outside `deleting` whose relations point at (bp, id).
    fn dependents(&self, bp: &str, id: &str, deleting: &BTreeSet<String>) -> Vec<String> {
        let mut found = Vec::new();
        for e in self.entities.values() {
            if e.blueprint == bp && deleting.contains(&e.identifier) {
                continue;
            }
            let blueprint = self
                .blueprints
                .get(&e.blueprint)
                .cloned()
                .unwrap_or(Json::Null);
            if validation::relation_targets(&blueprint, &e.body)
                .iter()
                .any(|(_, tbp, tid)| tbp == bp && tid == id)
            {
                found.push(format!("{}/{}", e.blueprint, e.identifier));
            }
        }
        found
    }

    /// The whole call fails when any entity has dependents and `delete_dependents` is false.
    fn bulk_delete(&mut self, req: &Incoming<'_>, bp: &str, ids: Vec<String>) -> Outcome {
        if !self.blueprints.contains_key(bp) {
            return not_found(&format!("blueprint {bp}"));
        }
        match self.faults.hostile_delete {
            Some(Hostile::Html) => {
                return Outcome::Raw(
                    StatusCode::OK,
                    "<html><body>maintenance</body></html>".into(),
                );
            }
            Some(Hostile::Truncated) => {
                return Outcome::Raw(StatusCode::OK, r#"{"ok": true, "deletedEnt"#.into());
            }
            Some(Hostile::NotOk) => return ok(json!({"ok": false, "error": "internal"})),
            _ => {}
        }
        let ids: BTreeSet<String> = ids.into_iter().collect();
        if !req.flag("delete_dependents") {
            for id in &ids {
                let deps = self.dependents(bp, id, &ids);
                if !deps.is_empty() {
                    return error(
                        422,
                        "has_dependents",
                        format!("{id} has dependent entities: {}", deps.join(", ")),
                    );
                }
            }
        }
        let mut deleted = Vec::new();
        for id in &ids {
            if self
                .entities
                .remove(&(bp.to_string(), id.clone()))
                .is_some()
            {
                deleted.push(id.clone());
            }
        }
        if self.faults.hostile_delete == Some(Hostile::BadIndexes) {
            deleted.push("never-sent".into());
        }
        ok(json!({"ok": true, "deletedEntities": deleted}))
    }

    fn delete_one(&mut self, req: &Incoming<'_>, bp: &str, id: &str) -> Outcome {
        if !self
            .entities
            .contains_key(&(bp.to_string(), id.to_string()))
        {
            return not_found(&format!("entity {id}"));
        }
        if !req.flag("delete_dependents") {
            let deps = self.dependents(bp, id, &BTreeSet::new());
            if !deps.is_empty() {
                return error(
                    422,
                    "has_dependents",
                    format!("{id} has dependent entities: {}", deps.join(", ")),
                );
            }
        }
        self.entities.remove(&(bp.to_string(), id.to_string()));
        ok(json!({"ok": true}))
    }
}

/// The query flags of an entity write.
#[derive(Clone, Copy)]
struct WriteOptions {
    upsert: bool,
    merge: bool,
    create_missing: bool,
    validation_only: bool,
}

/// The entity a write leaves: with `merge`, the fields sent over the stored ones (key by key
/// inside `properties` and `relations`); otherwise exactly the fields sent.
fn merged(
    existing: Option<&StoredEntity>,
    sent: &Map<String, Json>,
    merge: bool,
    identifier: &str,
) -> Map<String, Json> {
    let mut next = Map::new();
    next.insert("identifier".into(), json!(identifier));
    match (existing, merge) {
        (Some(old), true) => {
            next = old.body.clone();
            for field in ["title", "icon", "team"] {
                if let Some(v) = sent.get(field) {
                    next.insert(field.into(), v.clone());
                }
            }
            for field in ["properties", "relations"] {
                if let Some(Json::Object(new)) = sent.get(field) {
                    let mut fields = next
                        .get(field)
                        .and_then(Json::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for (k, v) in new {
                        fields.insert(k.clone(), v.clone());
                    }
                    next.insert(field.into(), Json::Object(fields));
                }
            }
        }
        _ => {
            for field in ["title", "icon", "team", "properties", "relations"] {
                if let Some(v) = sent.get(field) {
                    next.insert(field.into(), v.clone());
                }
            }
        }
    }
    next
}

/// The fields of a rendered entity that `include` keeps and `exclude` leaves out: meta-properties
/// by `$name`, properties and relations by identifier.
fn select_fields(rendered: &Json, request: &contract::SearchRequest) -> Json {
    let wanted = |name: &str| {
        request
            .include
            .as_ref()
            .is_none_or(|list| list.iter().any(|i| i == name))
            && !request
                .exclude
                .as_ref()
                .is_some_and(|list| list.iter().any(|e| e == name))
    };
    let Some(obj) = rendered.as_object() else {
        return rendered.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "properties" | "relations" => {
                let kept: Map<String, Json> = value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                if request.include.is_none() || !kept.is_empty() {
                    out.insert(key.clone(), Json::Object(kept));
                }
            }
            "$datasource" => {
                out.insert(key.clone(), value.clone());
            }
            meta if wanted(&format!("${meta}")) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Json::Object(out)
}

/// Reverses the key order of every object in `value`.
fn reverse_keys(value: &mut Json) {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = std::mem::take(map).into_iter().collect();
            entries.reverse();
            for (k, mut v) in entries {
                reverse_keys(&mut v);
                map.insert(k, v);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(reverse_keys),
        _ => {}
    }
}

/// The cursor after `from` in a circle of two, for `Hostile::CursorLoop`.
fn looping_cursor(from: Option<&str>) -> Json {
    match from {
        Some("cursor-loop-a") => json!("cursor-loop-b"),
        _ => json!("cursor-loop-a"),
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}
