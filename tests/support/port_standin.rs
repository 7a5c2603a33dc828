//! A stateful stand-in for Port's REST API on 127.0.0.1, for tests and benchmarks: tokens,
//! blueprints, entities with `$datasource` = the writer's User-Agent, the search rules tidemark
//! uses, Port's bulk limits and 207 answers, validation against blueprints, rate-limit headers,
//! request counters, and fault injection.
#![allow(dead_code)] // Shared by several test binaries and the benchmark; each uses a part.

use std::collections::{BTreeMap, BTreeSet, HashSet};
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

use tidemark::catalog::port::PortConfig;
use tidemark::catalog::validate::{is_valid_identifier, validate_entity};
use tidemark::model::{Blueprint, Entity};
use tidemark::secret::Secret;

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
    /// A 200 with `ok: false`.
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
    /// Headers sent with every answer, replacing the stand-in's own of the same name.
    pub headers: Vec<(&'static str, String)>,
    /// Requests per 5-minute window before 429s.
    pub rate_limit: usize,
    /// Largest request body accepted before 413 (Port's is 1 MiB).
    pub body_limit: usize,
    /// Length of the rate-limit window (Port's is 5 minutes).
    pub rate_window: Duration,
    /// Send `x-ratelimit-reset` as an epoch time instead of seconds.
    pub epoch_reset: bool,
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
            headers: Vec::new(),
            rate_limit: 1_000_000,
            rate_window: RATE_WINDOW,
            body_limit: BODY_LIMIT,
            epoch_reset: false,
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
}

struct Inner {
    blueprints: BTreeMap<String, Json>,
    entities: BTreeMap<(String, String), StoredEntity>,
    tokens: HashSet<String>,
    next_token: u64,
    faults: Faults,
    counters: Counters,
    writes_seen: usize,
    window_start: Instant,
    window_count: usize,
    log: Vec<Logged>,
}

/// A running stand-in. Clones share the same server and state.
#[derive(Clone)]
pub struct PortStandIn {
    url: String,
    inner: Arc<Mutex<Inner>>,
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
            tokens: HashSet::new(),
            next_token: 0,
            faults: Faults::default(),
            counters: Counters::default(),
            writes_seen: 0,
            window_start: Instant::now(),
            window_count: 0,
            log: Vec::new(),
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

    /// Revokes every token, as if they had expired on Port's side.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    pub fn add_blueprint(&self, blueprint: Json) {
        let id = blueprint["identifier"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.lock().blueprints.insert(id, blueprint);
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
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
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
    fn flag(&self, name: &str) -> bool {
        query_pairs(self.query)
            .iter()
            .any(|(k, v)| k == name && v == "true")
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

impl Inner {
    fn rate_headers(&self) -> Vec<(&'static str, String)> {
        let left = self
            .faults
            .rate_window
            .saturating_sub(self.window_start.elapsed());
        // Rounded up, so a client that waits this long finds a fresh window.
        let reset_secs = left.as_millis().div_ceil(1000).max(1) as u64;
        let reset = if self.faults.epoch_reset {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            (now + reset_secs).to_string()
        } else {
            reset_secs.to_string()
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

    fn process(&mut self, req: &Incoming<'_>) -> Outcome {
        let segments: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let is_auth = segs == ["v1", "auth", "access_token"];
        let is_read = *req.method == Method::GET
            || (*req.method == Method::POST
                && matches!(
                    segs.as_slice(),
                    ["v1", "blueprints", _, "entities", "search"]
                        | ["v1", "blueprints", "entities", "datasource-entities"]
                        | ["v1", "entities", "search"]
                ));
        if is_auth {
            self.counters.auth += 1;
        } else if is_read {
            self.counters.reads += 1;
        } else {
            self.counters.writes += 1;
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
        if !is_auth && !is_read {
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
        if is_auth {
            return self.issue_token(req);
        }
        let token = req.auth.strip_prefix("Bearer ").unwrap_or_default();
        if !self.tokens.contains(token) {
            return error(401, "unauthorized", "invalid or expired token");
        }
        let body: Json = if req.body.is_empty() {
            Json::Null
        } else {
            match serde_json::from_slice(req.body) {
                Ok(b) => b,
                Err(e) => return error(422, "invalid_request", format!("invalid JSON: {e}")),
            }
        };
        let outcome = self.route(req, &segs, &body);
        if !is_read
            && self.faults.drop_after_commit > 0
            && let Outcome::Reply(status, _, _) = &outcome
            && status.is_success()
        {
            self.faults.drop_after_commit -= 1;
            return Outcome::Drop;
        }
        outcome
    }

    fn issue_token(&mut self, req: &Incoming<'_>) -> Outcome {
        let body: Json = serde_json::from_slice(req.body).unwrap_or(Json::Null);
        if body["clientId"] != CLIENT_ID || body["clientSecret"] != CLIENT_SECRET {
            return error(401, "invalid_client", "bad client id or secret");
        }
        self.next_token += 1;
        let token = format!("standin-token-{}", self.next_token);
        self.tokens.insert(token.clone());
        let expires_in = self
            .faults
            .token_expires_in
            .clone()
            .unwrap_or_else(|| json!(self.faults.token_lifetime_secs));
        ok(json!({"ok": true, "accessToken": token,
                  "expiresIn": expires_in, "tokenType": "Bearer"}))
    }

    fn route(&mut self, req: &Incoming<'_>, segs: &[&str], body: &Json) -> Outcome {
        let m = req.method.clone();
        match segs {
            ["v1", "blueprints"] if m == Method::GET => {
                let list: Vec<Json> = self.blueprints.values().cloned().collect();
                ok(json!({"ok": true, "blueprints": list}))
            }
            ["v1", "blueprints"] if m == Method::POST => self.create_blueprint(body),
            ["v1", "blueprints", "entities", "datasource-entities"] if m == Method::POST => {
                self.datasource_entities(body)
            }
            ["v1", "blueprints", bp] if m == Method::GET => match self.blueprints.get(*bp) {
                Some(b) => ok(json!({"ok": true, "blueprint": b})),
                None => error(404, "not_found", format!("blueprint {bp} was not found")),
            },
            ["v1", "blueprints", bp] if m == Method::PATCH => self.patch_blueprint(bp, body),
            ["v1", "blueprints", bp, "entities", "bulk"] if m == Method::POST => {
                self.bulk_upsert(req, bp, body)
            }
            ["v1", "blueprints", bp, "entities", "search"] if m == Method::POST => {
                self.search(bp, body)
            }
            ["v1", "blueprints", bp, "bulk", "entities", "delete"] if m == Method::POST => {
                self.bulk_delete(req, bp, body)
            }
            ["v1", "blueprints", bp, "entities", id] if m == Method::DELETE => {
                self.delete_one(req, bp, id)
            }
            ["v1", "blueprints", bp, "entities", id] if m == Method::GET => {
                match self.entities.get(&(bp.to_string(), id.to_string())) {
                    Some(e) => ok(json!({"ok": true, "entity": self.render(e)})),
                    None => error(404, "not_found", format!("entity {id} was not found")),
                }
            }
            _ => error(404, "not_found", format!("no route {} {}", m, req.path)),
        }
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

    fn create_blueprint(&mut self, body: &Json) -> Outcome {
        let Some(id) = body.get("identifier").and_then(Json::as_str) else {
            return error(422, "invalid_request", "identifier is required");
        };
        if self.blueprints.contains_key(id) {
            return error(
                409,
                "identifier_taken",
                format!("blueprint {id} already exists"),
            );
        }
        if let Err(e) = self.check_relation_targets(body) {
            return e;
        }
        self.blueprints.insert(id.to_string(), body.clone());
        Outcome::Reply(
            StatusCode::CREATED,
            json!({"ok": true, "blueprint": body}),
            Vec::new(),
        )
    }

    /// Top-level keys of the body replace the blueprint's.
    fn patch_blueprint(&mut self, id: &str, body: &Json) -> Outcome {
        let Some(mut current) = self.blueprints.get(id).cloned() else {
            return error(404, "not_found", format!("blueprint {id} was not found"));
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

    fn bulk_upsert(&mut self, req: &Incoming<'_>, bp: &str, body: &Json) -> Outcome {
        let Some(items) = body.get("entities").and_then(Json::as_array) else {
            return error(422, "invalid_request", "entities must be a list");
        };
        if items.is_empty() || items.len() > BULK_UPSERT_MAX {
            return error(
                422,
                "invalid_request",
                format!("entities must hold 1 to {BULK_UPSERT_MAX} items"),
            );
        }
        if !self.blueprints.contains_key(bp) {
            return error(404, "not_found", format!("blueprint {bp} was not found"));
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
        let upsert = req.flag("upsert");
        let merge = req.flag("merge");
        let create_missing = req.flag("create_missing_related_entities");
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match self.upsert_one(bp, item, upsert, merge, create_missing, req.user_agent) {
                Ok((identifier, created)) => {
                    done.push(json!({"identifier": identifier, "index": index, "created": created}))
                }
                Err((status, code, message)) => errors.push(json!({
                    "identifier": item.get("identifier").cloned().unwrap_or(json!("unknown")),
                    "index": index, "statusCode": status, "error": code, "message": message})),
            }
        }
        if self.faults.hostile_bulk == Some(Hostile::BadIndexes) {
            for d in done.iter_mut() {
                let i = d["index"].as_u64().unwrap_or(0);
                d["index"] = json!(i + 1);
            }
        }
        let status = if errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::MULTI_STATUS
        };
        Outcome::Reply(
            status,
            json!({"ok": true, "entities": done, "errors": errors}),
            Vec::new(),
        )
    }

    /// One entity of a bulk upsert, validated like Port and committed on success.
    fn upsert_one(
        &mut self,
        bp: &str,
        item: &Json,
        upsert: bool,
        merge: bool,
        create_missing: bool,
        user_agent: &str,
    ) -> Result<(String, bool), (u16, String, String)> {
        let invalid = |m: String| (422u16, "invalid_entity".to_string(), m);
        let obj = item
            .as_object()
            .ok_or_else(|| invalid("an entity must be an object".into()))?;
        let identifier = obj
            .get("identifier")
            .and_then(Json::as_str)
            .filter(|id| is_valid_identifier(id))
            .ok_or_else(|| invalid("identifier is missing or invalid".into()))?
            .to_string();
        let key = (bp.to_string(), identifier.clone());
        let existing = self.entities.get(&key).cloned();
        if existing.is_some() && !upsert {
            return Err((
                409,
                "identifier_taken".into(),
                format!("{identifier} exists"),
            ));
        }
        let mut next = Map::new();
        next.insert("identifier".into(), json!(identifier));
        match (&existing, merge) {
            (Some(old), true) => {
                next = old.body.clone();
                for field in ["title", "icon", "team"] {
                    if let Some(v) = obj.get(field) {
                        next.insert(field.into(), v.clone());
                    }
                }
                for field in ["properties", "relations"] {
                    if let Some(Json::Object(new)) = obj.get(field) {
                        let mut merged = next
                            .get(field)
                            .and_then(Json::as_object)
                            .cloned()
                            .unwrap_or_default();
                        for (k, v) in new {
                            merged.insert(k.clone(), v.clone());
                        }
                        next.insert(field.into(), Json::Object(merged));
                    }
                }
            }
            _ => {
                for field in ["title", "icon", "team", "properties", "relations"] {
                    if let Some(v) = obj.get(field) {
                        next.insert(field.into(), v.clone());
                    }
                }
            }
        }
        let blueprint = Blueprint(self.blueprints.get(bp).cloned().unwrap_or(Json::Null));
        let mut entity: Entity = serde_json::from_value(json!({
            "identifier": identifier, "blueprint": bp,
        }))
        .map_err(|e| invalid(e.to_string()))?;
        entity.title = next.get("title").cloned();
        entity.icon = next.get("icon").cloned();
        entity.team = next.get("team").cloned();
        entity.properties = next.get("properties").and_then(Json::as_object).cloned();
        entity.relations = next.get("relations").and_then(Json::as_object).cloned();
        if let Err(problems) = validate_entity(&blueprint, &entity, true) {
            return Err(invalid(problems.join("; ")));
        }
        let relations = blueprint.relations();
        let mut to_create = Vec::new();
        for (name, target) in entity.relation_targets() {
            let Some(def) = relations.iter().find(|r| r.name == name) else {
                continue;
            };
            let target_key = (def.target.clone(), target.to_string());
            let is_self = target_key == key;
            if !self.entities.contains_key(&target_key) && !is_self {
                if create_missing {
                    to_create.push(target_key);
                } else {
                    return Err((
                        404,
                        "not_found".into(),
                        format!(
                            "related entity {target} of blueprint {} was not found",
                            def.target
                        ),
                    ));
                }
            }
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

    fn render(&self, e: &StoredEntity) -> Json {
        let mut out = e.body.clone();
        out.insert("blueprint".into(), json!(e.blueprint));
        out.insert("createdAt".into(), json!("2026-01-01T00:00:00.000Z"));
        out.insert("updatedAt".into(), json!("2026-01-01T00:00:00.000Z"));
        out.insert("createdBy".into(), json!("standin"));
        out.insert("updatedBy".into(), json!("standin"));
        if self.faults.expose_datasource {
            out.insert("$datasource".into(), json!(e.datasource));
        }
        let mut out = Json::Object(out);
        if self.faults.reverse_keys {
            reverse_keys(&mut out);
        }
        out
    }

    fn search(&self, bp: &str, body: &Json) -> Outcome {
        if !self.blueprints.contains_key(bp) {
            return error(404, "not_found", format!("blueprint {bp} was not found"));
        }
        let limit = body.get("limit").and_then(Json::as_u64).unwrap_or(200) as usize;
        if !(1..=1000).contains(&limit) {
            return error(422, "invalid_request", "limit must be 1 to 1000");
        }
        let from = body
            .get("from")
            .and_then(Json::as_str)
            .and_then(|c| c.strip_prefix("cursor-"))
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let query = body.get("query").cloned().unwrap_or(Json::Null);
        let mut matched = Vec::new();
        for e in self.entities.values().filter(|e| e.blueprint == bp) {
            match matches(&query, e) {
                Ok(true) => matched.push(e),
                Ok(false) => {}
                Err(m) => return error(422, "invalid_query", m),
            }
        }
        let include: Option<Vec<String>> = body.get("include").and_then(Json::as_array).map(|l| {
            l.iter()
                .filter_map(Json::as_str)
                .map(|s| s.trim_start_matches('$').to_string())
                .collect()
        });
        let page: Vec<Json> = matched
            .iter()
            .skip(from)
            .take(limit)
            .map(|e| {
                let mut rendered = self.render(e);
                if let (Some(include), Some(obj)) = (&include, rendered.as_object_mut()) {
                    obj.retain(|k, _| {
                        k == "$datasource" || include.iter().any(|i| i == k.trim_start_matches('$'))
                    });
                }
                if self.faults.hostile_search == Some(Hostile::OtherBlueprint) {
                    rendered["blueprint"] = json!("someOtherBlueprint");
                }
                rendered
            })
            .collect();
        let next = if self.faults.hostile_search == Some(Hostile::CursorLoop) {
            looping_cursor(body)
        } else if from + limit < matched.len() {
            json!(format!("cursor-{}", from + limit))
        } else {
            Json::Null
        };
        match self.faults.hostile_search {
            Some(Hostile::Html) => Outcome::Raw(StatusCode::OK, "<html>login</html>".into()),
            Some(Hostile::Truncated) => {
                Outcome::Raw(StatusCode::OK, r#"{"ok": true, "entities": [{"#.into())
            }
            Some(Hostile::NotOk) => ok(json!({"ok": false, "error": "internal"})),
            _ => ok(json!({"ok": true, "entities": page, "next": next})),
        }
    }

    fn datasource_entities(&self, body: &Json) -> Outcome {
        let prefix = body["datasource_prefix"].as_str().unwrap_or_default();
        let suffix = body["datasource_suffix"].as_str().unwrap_or_default();
        let limit = body.get("limit").and_then(Json::as_u64).unwrap_or(5000) as usize;
        let from = body
            .get("from")
            .and_then(Json::as_str)
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
            looping_cursor(body)
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
            let blueprint = Blueprint(
                self.blueprints
                    .get(&e.blueprint)
                    .cloned()
                    .unwrap_or(Json::Null),
            );
            let Some(rels) = e.body.get("relations").and_then(Json::as_object) else {
                continue;
            };
            for def in blueprint.relations().iter().filter(|r| r.target == bp) {
                let points = match rels.get(&def.name) {
                    Some(Json::String(t)) => t == id,
                    Some(Json::Array(ts)) => ts.iter().any(|t| t == id),
                    _ => false,
                };
                if points {
                    found.push(format!("{}/{}", e.blueprint, e.identifier));
                }
            }
        }
        found
    }

    fn bulk_delete(&mut self, req: &Incoming<'_>, bp: &str, body: &Json) -> Outcome {
        let Some(ids) = body.get("entities").and_then(Json::as_array) else {
            return error(422, "invalid_request", "entities must be a list");
        };
        if ids.is_empty() || ids.len() > BULK_DELETE_MAX {
            return error(
                422,
                "invalid_request",
                format!("entities must hold 1 to {BULK_DELETE_MAX} items"),
            );
        }
        if !self.blueprints.contains_key(bp) {
            return error(404, "not_found", format!("blueprint {bp} was not found"));
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
        let ids: BTreeSet<String> = ids
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect();
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
            return error(404, "not_found", format!("entity {id} was not found"));
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

/// Port's search rules, as far as tidemark uses them.
fn matches(query: &Json, e: &StoredEntity) -> Result<bool, String> {
    if query.is_null() {
        return Ok(true);
    }
    if let Some(combinator) = query.get("combinator").and_then(Json::as_str) {
        let rules = query
            .get("rules")
            .and_then(Json::as_array)
            .ok_or("rules must be a list")?;
        let mut results = Vec::new();
        for r in rules {
            results.push(matches(r, e)?);
        }
        return match combinator {
            "and" => Ok(results.iter().all(|x| *x)),
            "or" => Ok(results.iter().any(|x| *x)),
            other => Err(format!("unknown combinator {other}")),
        };
    }
    let property = query
        .get("property")
        .and_then(Json::as_str)
        .ok_or("a rule needs a property")?;
    let operator = query
        .get("operator")
        .and_then(Json::as_str)
        .ok_or("a rule needs an operator")?;
    let value = query.get("value").cloned().unwrap_or(Json::Null);
    let field = match property {
        "$identifier" => json!(e.identifier),
        "$blueprint" => json!(e.blueprint),
        "$datasource" => json!(e.datasource),
        "$title" => e.body.get("title").cloned().unwrap_or(Json::Null),
        "$icon" => e.body.get("icon").cloned().unwrap_or(Json::Null),
        "$team" => e.body.get("team").cloned().unwrap_or(Json::Null),
        name => e
            .body
            .get("properties")
            .and_then(|p| p.get(name))
            .or_else(|| e.body.get("relations").and_then(|r| r.get(name)))
            .cloned()
            .unwrap_or(Json::Null),
    };
    let values: Vec<&Json> = match &field {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let text = field.as_str().unwrap_or_default();
    let needle = value.as_str().unwrap_or_default();
    Ok(match operator {
        "=" => field == value,
        "!=" => field != value,
        "in" => {
            let list = value.as_array().ok_or("in needs a list")?;
            values.iter().any(|v| list.contains(v))
        }
        "notIn" => {
            let list = value.as_array().ok_or("notIn needs a list")?;
            !values.iter().any(|v| list.contains(v))
        }
        "contains" => text.contains(needle),
        "doesNotContains" => !text.contains(needle),
        "beginsWith" => text.starts_with(needle),
        "endsWith" => text.ends_with(needle),
        "isEmpty" => field.is_null() || field == json!([]) || field == json!(""),
        "isNotEmpty" => !(field.is_null() || field == json!([]) || field == json!("")),
        other => return Err(format!("unsupported operator {other}")),
    })
}

/// The cursor after `body`'s in a circle of two, for `Hostile::CursorLoop`.
fn looping_cursor(body: &Json) -> Json {
    match body.get("from").and_then(Json::as_str) {
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
