//! The HTTP layer under the Port catalog: access tokens, the User-Agent that records ownership,
//! retries with backoff, client-side pacing from Port's rate-limit headers, and request counters.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, USER_AGENT};
use serde_json::{Value as Json, json};

use super::PortConfig;
use crate::adapters::requests::{Outcome, RequestCounter};
use crate::core::secret::Secret;

/// Statuses Port (or a proxy in front of it) answers when a retry can succeed. Plain 500 is not
/// retried, like Port's own Ocean client: it usually means the request itself is at fault.
const RETRYABLE_STATUSES: [u16; 5] = [408, 429, 502, 503, 504];

/// A `Retry-After` / `x-ratelimit-reset` number above this is an epoch time, below it a number of
/// seconds: Port's docs disagree on which it sends, and Ocean parses it the same way.
const EPOCH_THRESHOLD_SECS: f64 = 10_000.0;

/// The longest a token is trusted whatever `expiresIn` says. Port's tokens live three hours; a
/// far larger number is a broken answer, and refreshing daily costs one request.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How long one request keeps retrying when Port cannot be reached at all (no HTTP answer):
/// long enough for a blip or a pod restart, short enough that a wrong base URL or a network
/// policy that blocks Port fails a plan in about half a minute rather than minutes.
const UNREACHABLE_BUDGET: Duration = Duration::from_secs(30);

/// The `service` label of Port requests in the metrics.
const PORT: &str = "port";

/// How much of an error body is quoted in messages (HTML error pages can be long).
const SNIPPET_CHARS: usize = 200;

/// Retry and pacing knobs. The defaults follow Port's Ocean client (10 retries, 0.3 s base).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    /// Caps both the exponential backoff and waits that Port's headers ask for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(120),
        }
    }
}

/// Requests sent to Port so far, by kind. Every attempt counts, retries included, because that is
/// what Port's rate limits count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub reads: usize,
    pub writes: usize,
    pub auth: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Traffic {
    Read,
    Write,
}

/// Failures talking to Port. Messages never contain the client secret or the token.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "{method} {path}: Port could not be reached ({attempts} attempts in {seconds} s): {message}"
    )]
    Unreachable {
        method: String,
        path: String,
        attempts: u32,
        seconds: u64,
        message: String,
    },
    #[error("{method} {path}: Port still answered {status} after {attempts} attempts: {message}")]
    RetriesExhausted {
        method: String,
        path: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error(
        "{method} {path}: Port answered {status} with a body that is not valid JSON: {snippet}"
    )]
    NotJson {
        method: String,
        path: String,
        status: u16,
        snippet: String,
    },
    #[error("Port refused the client id and secret ({status}): {message}")]
    Credentials { status: u16, message: String },
    #[error("{method} {path}: Port answered {status}: {message}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{context}: {message}")]
    Unexpected { context: String, message: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// One answer from Port: the status and the parsed JSON body (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Json,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Port's `error` and `message`, for error replies.
    pub fn message(&self) -> String {
        describe_error(&self.body)
    }
}

struct CachedToken {
    /// The `tokenType` Port gave with it (`Bearer`), the scheme of the Authorization header.
    scheme: String,
    value: Secret,
    refresh_at: Instant,
}

/// The HTTP client shared by every Port operation.
pub(crate) struct Http {
    client: reqwest::Client,
    /// `{baseUrl}/v1`.
    api: String,
    config: PortConfig,
    /// `tidemark/<version>/<integration>`; writes append `/<account>`.
    agent: String,
    retry: RetryPolicy,
    /// Only one token request at a time; a tokio mutex because the refresh awaits while holding
    /// it, which is the point: concurrent requests wait for the one refresh instead of racing.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// Bounds the requests in flight across every operation.
    in_flight: tokio::sync::Semaphore,
    concurrency: usize,
    /// No request starts before this instant (set from `x-ratelimit-*` and 429 answers).
    paused_until: Mutex<Option<Instant>>,
    reads: AtomicUsize,
    writes: AtomicUsize,
    auth: AtomicUsize,
    /// The same attempts by outcome, with retries, for the daemon's metrics.
    requests: RequestCounter,
}

impl Http {
    /// How many requests may be in flight at once.
    pub(super) fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub fn new(
        config: PortConfig,
        agent: String,
        retry: RetryPolicy,
        concurrency: usize,
    ) -> Result<Http, PortError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| PortError::Client(e.to_string()))?;
        let api = format!("{}/v1", config.base_url.trim_end_matches('/'));
        // tokio panics above MAX_PERMITS.
        let concurrency = concurrency.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Http {
            client,
            api,
            config,
            agent,
            retry,
            token: tokio::sync::Mutex::new(None),
            in_flight: tokio::sync::Semaphore::new(concurrency),
            concurrency,
            paused_until: Mutex::new(None),
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            auth: AtomicUsize::new(0),
            requests: RequestCounter::new(),
        })
    }

    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            auth: self.auth.load(Ordering::Relaxed),
        }
    }

    /// The counter behind [`PortCatalog::take_requests`](crate::adapters::Catalog::take_requests).
    pub fn requests(&self) -> &RequestCounter {
        &self.requests
    }

    /// The metrics' `operation` label for the attempts counted in `counter`.
    fn operation(&self, counter: &AtomicUsize) -> &'static str {
        if std::ptr::eq(counter, &self.auth) {
            "auth"
        } else if std::ptr::eq(counter, &self.writes) {
            "write"
        } else {
            "read"
        }
    }

    /// The User-Agent for a write attributed to `account`; Port records it as `$datasource`.
    pub fn user_agent(&self, account: Option<&str>) -> String {
        match account {
            Some(account) => format!("{}/{account}", self.agent),
            None => self.agent.clone(),
        }
    }

    /// Sends one request to `path` (below `/v1`, query included) and returns Port's answer.
    /// Retryable statuses and network errors are retried; a 401 refreshes the token once.
    /// Any other status is returned for the caller to interpret, except that a 2xx with
    /// `ok: false` and a body that is not JSON are errors.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        account: Option<&str>,
        traffic: Traffic,
    ) -> Result<Reply, PortError> {
        let payload = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| PortError::Unexpected {
                context: format!("{method} {path}"),
                message: format!("could not encode the request body: {e}"),
            })?),
            None => None,
        };
        let url = format!("{}{}", self.api, path);
        let agent = self.user_agent(account);
        let mut refreshed = false;
        loop {
            let (scheme, token) = self.token().await?;
            let counter = match traffic {
                Traffic::Read => &self.reads,
                Traffic::Write => &self.writes,
            };
            let (status, bytes) = self
                .exchange(&method, path, counter, || {
                    let mut req = self
                        .client
                        .request(method.clone(), &url)
                        .header(AUTHORIZATION, format!("{scheme} {}", token.expose()))
                        .header(USER_AGENT, agent.as_str())
                        .header(ACCEPT, "application/json");
                    if let Some(p) = &payload {
                        req = req.header(CONTENT_TYPE, "application/json").body(p.clone());
                    }
                    req
                })
                .await?;
            // `exchange` scrubbed the credentials; only this request knows the token it sent.
            let bytes = scrub(bytes, &[token.expose()]);
            if status == 401 && !refreshed {
                // The token expired early or was revoked: fetch a new one and try once more.
                self.forget_token(&token).await;
                refreshed = true;
                continue;
            }
            return parse_reply(&method, path, status, &bytes);
        }
    }

    /// The cached token and its scheme, fetched or refreshed when it is close to expiry.
    async fn token(&self) -> Result<(String, Secret), PortError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok((t.scheme.clone(), t.value.clone()));
        }
        let fresh = self.fetch_token().await?;
        let token = (fresh.scheme.clone(), fresh.value.clone());
        *cached = Some(fresh);
        Ok(token)
    }

    async fn forget_token(&self, used: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == used) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, PortError> {
        let url = format!("{}/auth/access_token", self.api);
        let path = "/auth/access_token";
        let body = json!({
            "clientId": self.config.client_id.expose(),
            "clientSecret": self.config.client_secret.expose(),
        });
        let payload = serde_json::to_vec(&body).map_err(|e| PortError::Unexpected {
            context: "POST /auth/access_token".into(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let (status, bytes) = self
            .exchange(&Method::POST, path, &self.auth, || {
                self.client
                    .post(&url)
                    .header(USER_AGENT, self.agent.as_str())
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/json")
                    .body(payload.clone())
            })
            .await?;
        let reply = parse_reply(&Method::POST, path, status, &bytes)?;
        if !reply.is_success() {
            return Err(PortError::Credentials {
                status,
                message: reply.message(),
            });
        }
        let token = reply
            .body
            .get("accessToken")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PortError::Unexpected {
                context: "POST /auth/access_token".into(),
                message: "Port's answer has no accessToken".into(),
            })?;
        let lifetime = reply
            .body
            .get("expiresIn")
            .and_then(Json::as_f64)
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::from_secs(3600), seconds)
            .min(MAX_TOKEN_LIFETIME);
        Ok(CachedToken {
            scheme: token_scheme(&reply.body)?,
            value: Secret::new(token),
            refresh_at: started + token_refresh_after(lifetime),
        })
    }

    /// `bytes` with the client id and secret replaced by `***`. Port does not repeat them, but a
    /// proxy or gateway that quotes the request in its error would otherwise carry them (and the
    /// token, see [`Http::send`]) into messages, plans and logs.
    fn scrub_credentials(&self, bytes: Vec<u8>) -> Vec<u8> {
        scrub(
            bytes,
            &[
                self.config.client_id.expose(),
                self.config.client_secret.expose(),
            ],
        )
    }

    /// Sends a request built by `build`, retrying network errors and retryable statuses with
    /// backoff. Returns the final status and body bytes.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        counter: &AtomicUsize,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), PortError> {
        let mut attempt: u32 = 0;
        let started = Instant::now();
        loop {
            self.wait_for_pace().await;
            let outcome = {
                let _permit = self.in_flight.acquire().await.map_err(|e| {
                    PortError::Client(format!("request limiter closed unexpectedly: {e}"))
                })?;
                counter.fetch_add(1, Ordering::Relaxed);
                match build().send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        self.note_rate_limit(&headers, status);
                        match resp.bytes().await {
                            Ok(bytes) => {
                                Ok((status, headers, self.scrub_credentials(bytes.to_vec())))
                            }
                            Err(e) => Err(network_cause(&e)),
                        }
                    }
                    Err(e) => Err(network_cause(&e)),
                }
            };
            attempt += 1;
            let operation = self.operation(counter);
            self.requests.attempt(
                PORT,
                operation,
                match &outcome {
                    Ok((429, _, _)) => Outcome::Throttled,
                    Ok((status, _, _)) if *status < 400 => Outcome::Ok,
                    _ => Outcome::Failed,
                },
            );
            let wait = match outcome {
                Ok((status, headers, bytes)) => {
                    if !RETRYABLE_STATUSES.contains(&status) {
                        return Ok((status, bytes));
                    }
                    if attempt > self.retry.max_retries {
                        return Err(PortError::RetriesExhausted {
                            method: method.to_string(),
                            path: path.to_string(),
                            status,
                            attempts: attempt,
                            message: snippet(&bytes),
                        });
                    }
                    let wait = retry_wait(status, &headers, self.backoff(attempt))
                        .min(self.retry.max_delay);
                    tracing::warn!(%method, path, attempt, wait_ms = wait.as_millis() as u64, "Port answered {status}; retrying");
                    wait
                }
                Err(message) => {
                    let wait = self.backoff(attempt).min(self.retry.max_delay);
                    let out_of_time = started.elapsed() + wait > UNREACHABLE_BUDGET;
                    if attempt > self.retry.max_retries || out_of_time {
                        return Err(PortError::Unreachable {
                            method: method.to_string(),
                            path: path.to_string(),
                            attempts: attempt,
                            seconds: started.elapsed().as_secs(),
                            message,
                        });
                    }
                    tracing::warn!(%method, path, attempt, wait_ms = wait.as_millis() as u64, "Port could not be reached ({message}); retrying");
                    wait
                }
            };
            self.requests.retry(PORT, operation);
            tokio::time::sleep(wait).await;
        }
    }

    /// Exponential backoff with jitter: a random point in the upper half of `base * 2^(n-1)`.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
            .min(self.retry.max_delay);
        exp / 2 + exp.mul_f64(random_fraction() / 2.0)
    }

    async fn wait_for_pace(&self) {
        let until = self.paused_until.lock().ok().and_then(|p| *p);
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tokio::time::sleep((until - now).min(self.retry.max_delay)).await;
            }
        }
    }

    /// Slows down before Port has to say 429: with no requests left in the window, wait for its
    /// reset; with few left, spread them over what remains of the window.
    fn note_rate_limit(&self, headers: &HeaderMap, status: u16) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite())
        };
        if status == 429 {
            // Port says when to come back (Retry-After first, then the window's reset); until
            // then no request of ours would get through.
            if let Some(wait) = header_wait(headers) {
                self.pause_for(wait);
            }
            return;
        }
        let reset = headers
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_wait);
        let (Some(remaining), Some(reset)) = (number("x-ratelimit-remaining"), reset) else {
            return;
        };
        let limit = number("x-ratelimit-limit").unwrap_or(0.0);
        if remaining <= 0.0 {
            self.pause_for(reset);
        } else if limit > 0.0 && remaining < limit / 10.0 {
            self.pause_for(seconds(reset.as_secs_f64() / remaining));
        }
    }

    fn pause_for(&self, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait.min(self.retry.max_delay)) else {
            return;
        };
        if let Ok(mut paused) = self.paused_until.lock()
            && paused.is_none_or(|p| p < until)
        {
            *paused = Some(until);
        }
    }
}

/// When to refresh a token that lives `lifetime`: well before it expires, leaving the smaller of
/// five minutes and a fifth of its lifetime.
/// The scheme Port names in `tokenType`, as Ocean sends it (`<tokenType> <accessToken>`).
/// `Bearer` when Port leaves it out; anything that is not one plain word is refused, because it
/// would go into a header as is.
fn token_scheme(body: &Json) -> Result<String, PortError> {
    match body.get("tokenType") {
        None | Some(Json::Null) => Ok("Bearer".into()),
        Some(Json::String(t)) if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(t.clone())
        }
        Some(other) => Err(PortError::Unexpected {
            context: "POST /auth/access_token".into(),
            message: format!("Port's tokenType {other} is not an HTTP authorization scheme"),
        }),
    }
}

fn token_refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(Duration::from_secs(300).min(lifetime / 5))
}

/// What went wrong on the way to Port, in words an operator acts on, with the innermost cause:
/// `connection refused (tcp connect error: Connection refused (os error 111))`. reqwest's own
/// message alone ("error sending request") says nothing about which.
fn network_cause(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let chain = causes.join(": ").to_lowercase();
    let kind = if e.is_timeout() {
        "timed out"
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        "DNS lookup failed (check catalog.baseUrl)"
    } else if chain.contains("connection refused") {
        "connection refused"
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        "TLS error"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    };
    match causes.last() {
        Some(innermost) => format!("{kind} ({innermost})"),
        None => kind.to_string(),
    }
}

fn parse_reply(method: &Method, path: &str, status: u16, bytes: &[u8]) -> Result<Reply, PortError> {
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Json::Null
    } else {
        serde_json::from_slice::<Json>(bytes).map_err(|_| PortError::NotJson {
            method: method.to_string(),
            path: path.to_string(),
            status,
            snippet: snippet(bytes),
        })?
    };
    let reply = Reply { status, body };
    if reply.is_success()
        && reply.body.get("ok") == Some(&Json::Bool(false))
        && !has_entity_results(&reply.body)
    {
        return Err(PortError::Refused {
            method: method.to_string(),
            path: path.to_string(),
            status,
            message: format!("ok is false: {}", reply.message()),
        });
    }
    Ok(reply)
}

/// Whether `body` carries per-entity results (`entities` and `errors` lists), as a bulk upsert's
/// 200 and 207 answers do. Port's schema makes their `ok` a plain boolean, so a partial success
/// may say `ok: false`: the per-entity results, not `ok`, say what was written.
fn has_entity_results(body: &Json) -> bool {
    body.get("entities").is_some_and(Json::is_array)
        && body.get("errors").is_some_and(Json::is_array)
}

/// `error: message` from a Port error envelope, or a snippet of whatever came instead.
pub(crate) fn describe_error(body: &Json) -> String {
    let error = body.get("error").and_then(Json::as_str);
    let message = body.get("message").and_then(Json::as_str);
    match (error, message) {
        (Some(e), Some(m)) => format!("{e}: {m}"),
        (Some(e), None) => e.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => snippet(body.to_string().as_bytes()),
    }
}

/// Secrets shorter than this are not scrubbed from answers: replacing a two-letter test id would
/// mangle every key holding it, and real client ids, secrets and tokens are far longer.
const MIN_SCRUBBED_LEN: usize = 6;

/// `bytes` with each of `secrets` (those long enough to be one) replaced by `***`.
fn scrub(bytes: Vec<u8>, secrets: &[&str]) -> Vec<u8> {
    secrets
        .iter()
        .filter(|s| s.len() >= MIN_SCRUBBED_LEN)
        .fold(bytes, |bytes, secret| replace_all(bytes, secret.as_bytes()))
}

/// `haystack` with every `needle` replaced by `***`; unchanged (no copy) when there is none.
fn replace_all(haystack: Vec<u8>, needle: &[u8]) -> Vec<u8> {
    let mut found = memchr::memmem::find_iter(&haystack, needle).peekable();
    if found.peek().is_none() {
        return haystack;
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = 0;
    for at in found {
        out.extend_from_slice(&haystack[rest..at]);
        out.extend_from_slice(b"***");
        rest = at + needle.len();
    }
    out.extend_from_slice(&haystack[rest..]);
    out
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > SNIPPET_CHARS {
        format!("{}…", text.chars().take(SNIPPET_CHARS).collect::<String>())
    } else {
        text.to_string()
    }
}

/// How long to wait before retrying an answer with a retryable `status`: what Port asks for, but
/// never less than the backoff.
///
/// `x-ratelimit-reset` counts only for a 429. Port sends it on every answer, and it is when the
/// 5-minute rate window ends, not when a failed request may succeed: waiting for it after a 503
/// stalled every retry for minutes (capped at `max_delay`, two minutes by default), so an apply
/// with a few 503s seemed to hang. `Retry-After` is honoured on any retryable status, as HTTP
/// defines it for 503 too. The backoff floor keeps `Retry-After: 0` during a 429 burst from
/// spending every retry within milliseconds.
fn retry_wait(status: u16, headers: &HeaderMap, backoff: Duration) -> Duration {
    let asked = if status == 429 {
        header_wait(headers)
    } else {
        headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_wait)
    };
    asked.map_or(backoff, |asked| asked.max(backoff))
}

/// How long Port asks us to wait: `Retry-After` first, then `x-ratelimit-reset`.
fn header_wait(headers: &HeaderMap) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok().and_then(parse_wait))
}

/// A wait given as seconds (`"2"`, `"1.5"`) or as an epoch time in seconds (`"1767225600"`).
/// Waits too long for a `Duration` come back as `Duration::MAX`; callers cap every wait at
/// `max_delay`.
pub(crate) fn parse_wait(value: &str) -> Option<Duration> {
    let n = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?;
    if n > EPOCH_THRESHOLD_SECS {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Some(seconds((n - now).max(0.0)))
    } else {
        Some(seconds(n))
    }
}

/// `secs` as a `Duration`, saturating: numbers from Port's headers and bodies can be anything.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(if secs > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// A number in [0, 1) from the standard library's randomly seeded hasher; enough for jitter.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Percent-encodes one path segment: everything but unreserved characters, so ARNs with `:` and
/// `/` stay one segment.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_read_as_seconds_or_as_an_epoch_time() {
        assert_eq!(parse_wait("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_wait(" 1.5 "), Some(Duration::from_millis(1500)));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let wait = parse_wait(&(now + 30).to_string()).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(parse_wait("1000"), Some(Duration::from_secs(1000)));
        assert_eq!(parse_wait(&(now - 100).to_string()), Some(Duration::ZERO));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("-3"), None);
        assert_eq!(parse_wait("1e300"), Some(Duration::MAX));
        assert_eq!(parse_wait("99999999999999999999"), Some(Duration::MAX));
        assert_eq!(parse_wait("NaN"), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn a_503_is_retried_after_the_backoff_not_when_the_rate_window_resets() {
        let backoff = Duration::from_millis(300);
        let window = headers(&[
            ("x-ratelimit-reset", "290"),
            ("x-ratelimit-remaining", "900"),
        ]);
        assert_eq!(retry_wait(503, &window, backoff), backoff);
        assert_eq!(retry_wait(502, &window, backoff), backoff);
        let asked = headers(&[("retry-after", "5"), ("x-ratelimit-reset", "290")]);
        assert_eq!(retry_wait(503, &asked, backoff), Duration::from_secs(5));
    }

    #[test]
    fn a_429_waits_for_retry_after_or_the_window_but_never_less_than_the_backoff() {
        let backoff = Duration::from_millis(300);
        let both = headers(&[("retry-after", "2"), ("x-ratelimit-reset", "290")]);
        assert_eq!(retry_wait(429, &both, backoff), Duration::from_secs(2));
        let window = headers(&[("x-ratelimit-reset", "30")]);
        assert_eq!(retry_wait(429, &window, backoff), Duration::from_secs(30));
        let now = headers(&[("retry-after", "0")]);
        assert_eq!(retry_wait(429, &now, backoff), backoff);
        assert_eq!(retry_wait(429, &HeaderMap::new(), backoff), backoff);
    }

    #[test]
    fn identifiers_are_one_encoded_path_segment() {
        assert_eq!(
            encode_segment("arn:aws:s3:::b/k+x=y@z"),
            "arn%3Aaws%3As3%3A%3A%3Ab%2Fk%2Bx%3Dy%40z"
        );
        assert_eq!(encode_segment("plain-id_1.2~"), "plain-id_1.2~");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn tokens_are_refreshed_well_before_they_expire() {
        assert_eq!(
            token_refresh_after(Duration::from_secs(10_800)),
            Duration::from_secs(10_500)
        );
        assert_eq!(
            token_refresh_after(Duration::from_secs(10)),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn port_error_envelopes_are_described_with_code_and_message() {
        assert_eq!(
            describe_error(&json!({"ok": false, "error": "not_found", "message": "gone"})),
            "not_found: gone"
        );
        assert_eq!(describe_error(&json!({"x": 1})), r#"{"x":1}"#);
    }

    #[test]
    fn html_and_truncated_json_are_errors_not_empty_answers() {
        let html = parse_reply(&Method::GET, "/x", 200, b"<html>oops</html>");
        assert!(matches!(html, Err(PortError::NotJson { .. })), "{html:?}");
        let cut = parse_reply(&Method::GET, "/x", 200, br#"{"ok": true, "entities": ["#);
        assert!(matches!(cut, Err(PortError::NotJson { .. })), "{cut:?}");
        let not_ok = parse_reply(&Method::GET, "/x", 200, br#"{"ok": false, "error": "e"}"#);
        assert!(
            matches!(not_ok, Err(PortError::Refused { .. })),
            "{not_ok:?}"
        );
    }
}
