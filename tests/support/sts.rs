//! An STS stand-in that, unlike moto, enforces what tests need enforced: it denies chosen roles,
//! checks the ExternalId, issues credentials with a chosen lifetime, and records what it was sent.
//! Query protocol in (form-encoded), XML out, as the SDK speaks it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One call as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsCall {
    pub action: String,
    pub role_arn: Option<String>,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    pub web_identity_token: Option<String>,
}

/// Access keys the stand-in issued: which account they belong to and when they expire.
#[derive(Default)]
pub struct KeyRegistry {
    keys: Mutex<HashMap<String, (String, SystemTime)>>,
}

pub enum KeyState {
    Valid(String),
    Expired,
    Unknown,
}

impl KeyRegistry {
    pub fn insert(&self, key: &str, account: &str, expiry: SystemTime) {
        self.keys
            .lock()
            .expect("lock")
            .insert(key.to_string(), (account.to_string(), expiry));
    }

    pub fn check(&self, key: &str) -> KeyState {
        match self.keys.lock().expect("lock").get(key) {
            Some((_, expiry)) if SystemTime::now() >= *expiry => KeyState::Expired,
            Some((account, _)) => KeyState::Valid(account.clone()),
            None => KeyState::Unknown,
        }
    }
}

#[derive(Default)]
struct StsState {
    calls: Mutex<Vec<StsCall>>,
    denied_roles: Mutex<HashSet<String>>,
    required_external_id: Mutex<Option<String>>,
    lifetime: Mutex<Option<Duration>>,
    latency: Mutex<Duration>,
    keys: Arc<KeyRegistry>,
    counter: AtomicU64,
}

pub struct StsStandIn {
    pub url: String,
    state: Arc<StsState>,
    _server: tokio::task::JoinHandle<()>,
}

/// The base identity's account: static test keys belong here.
pub const BASE_ACCOUNT: &str = "111111111111";

impl StsStandIn {
    pub async fn start() -> StsStandIn {
        let state = Arc::new(StsState::default());
        let app = Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind STS stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StsStandIn {
            url,
            state,
            _server: server,
        }
    }

    pub fn keys(&self) -> Arc<KeyRegistry> {
        Arc::clone(&self.state.keys)
    }

    /// Registers static base keys as belonging to `BASE_ACCOUNT`, valid for the test's life.
    pub fn register_base_key(&self, key: &str) {
        self.state.keys.insert(
            key,
            BASE_ACCOUNT,
            SystemTime::now() + Duration::from_secs(3600),
        );
    }

    pub fn deny_role(&self, role_arn: &str) {
        self.state
            .denied_roles
            .lock()
            .expect("lock")
            .insert(role_arn.to_string());
    }

    pub fn require_external_id(&self, external_id: &str) {
        *self.state.required_external_id.lock().expect("lock") = Some(external_id.to_string());
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.state.lifetime.lock().expect("lock") = Some(lifetime);
    }

    /// Delays every answer, as a distant STS would.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().expect("lock") = latency;
    }

    pub fn calls(&self) -> Vec<StsCall> {
        self.state.calls.lock().expect("lock").clone()
    }
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn account_of_role(role_arn: &str) -> String {
    role_arn.split(':').nth(4).unwrap_or_default().to_string()
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "text/xml")],
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>stand-in</RequestId></ErrorResponse>"
        ),
    )
        .into_response()
}

async fn handle(State(state): State<Arc<StsState>>, body: Bytes) -> Response {
    let latency = *state.latency.lock().expect("lock");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let form = parse_form(&body);
    let action = form.get("Action").cloned().unwrap_or_default();
    let call = StsCall {
        action: action.clone(),
        role_arn: form.get("RoleArn").cloned(),
        session_name: form.get("RoleSessionName").cloned(),
        external_id: form.get("ExternalId").cloned(),
        web_identity_token: form.get("WebIdentityToken").cloned(),
    };
    state.calls.lock().expect("lock").push(call.clone());
    match action.as_str() {
        "AssumeRole" | "AssumeRoleWithWebIdentity" => {
            let role_arn = call.role_arn.clone().unwrap_or_default();
            if state.denied_roles.lock().expect("lock").contains(&role_arn) {
                return xml_error(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    &format!("User is not authorized to perform: sts:{action} on resource: {role_arn}"),
                );
            }
            if action == "AssumeRole" {
                let required = state.required_external_id.lock().expect("lock").clone();
                if required.is_some() && required != call.external_id {
                    return xml_error(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        &format!("User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"),
                    );
                }
            }
            let n = state.counter.fetch_add(1, Ordering::Relaxed);
            let key = format!("ASIASTANDIN{n:09}");
            let account = account_of_role(&role_arn);
            let lifetime = state
                .lock_lifetime()
                .unwrap_or(Duration::from_secs(3600));
            let expiry = SystemTime::now() + lifetime;
            state.keys.insert(&key, &account, expiry);
            let tag = format!("{action}Response");
            let result = format!("{action}Result");
            (
                [("content-type", "text/xml")],
                format!(
                    "<{tag} xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{result}><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>secret-{n}</SecretAccessKey><SessionToken>token-{n}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROASTANDIN:{}</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/r/{}</Arn></AssumedRoleUser></{result}><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></{tag}>",
                    humantime::format_rfc3339_millis(expiry),
                    call.session_name.clone().unwrap_or_default(),
                    call.session_name.unwrap_or_default(),
                ),
            )
                .into_response()
        }
        "GetCallerIdentity" => (
            [("content-type", "text/xml")],
            format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><UserId>AIDASTANDIN</UserId><Account>{BASE_ACCOUNT}</Account><Arn>arn:aws:iam::{BASE_ACCOUNT}:user/tidemark</Arn></GetCallerIdentityResult><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            ),
        )
            .into_response(),
        other => xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("the STS stand-in does not serve {other}"),
        ),
    }
}

impl StsState {
    fn lock_lifetime(&self) -> Option<Duration> {
        *self.lifetime.lock().expect("lock")
    }
}
