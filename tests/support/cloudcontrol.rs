//! A Cloud Control stand-in (moto has none): the real JSON 1.0 protocol
//! (`X-Amz-Target: CloudApiService.ListResources|GetResource`, `Properties` as a JSON string,
//! errors as `{"__type", "Message"}` with HTTP 400), resources kept per account as the caller's
//! access key says, pages of 3 items, and injectable throttling, errors and latency. It also
//! serves `account:ListRegions` (restJson1, `POST /listRegions`), which moto lacks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};

use super::sts::{KeyRegistry, KeyState};

/// Items per `ListResources` page: small, so that every test pages.
pub const PAGE_SIZE: usize = 3;
/// Regions per `ListRegions` page.
const REGIONS_PAGE_SIZE: usize = 2;

/// How the stand-in learns which account an access key belongs to.
pub enum Keys {
    /// Keys minted by moto: asked of moto itself (`GetCallerIdentity` with that key; moto does
    /// not check signatures), then cached.
    Moto {
        url: String,
        cache: Mutex<HashMap<String, String>>,
    },
    /// Keys minted by our STS stand-in, which knows their expiry: expired keys are rejected.
    StandIn(Arc<KeyRegistry>),
}

impl Keys {
    pub fn moto(url: &str) -> Keys {
        Keys::Moto {
            url: url.to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn account(&self, key: &str) -> Result<String, (&'static str, String)> {
        match self {
            Keys::StandIn(registry) => match registry.check(key) {
                KeyState::Valid(account) => Ok(account),
                KeyState::Expired => Err((
                    "ExpiredTokenException",
                    "The security token included in the request is expired".into(),
                )),
                KeyState::Unknown => Err((
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid".into(),
                )),
            },
            Keys::Moto { url, cache } => {
                if let Some(account) = cache.lock().expect("lock").get(key) {
                    return Ok(account.clone());
                }
                let answer = reqwest::Client::new()
                    .post(format!("{url}/"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(
                        "authorization",
                        format!("AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00"),
                    )
                    .body("Action=GetCallerIdentity&Version=2011-06-15")
                    .send()
                    .await
                    .map_err(|e| ("InternalFailure", e.to_string()))?
                    .text()
                    .await
                    .map_err(|e| ("InternalFailure", e.to_string()))?;
                let account = answer
                    .split("<Account>")
                    .nth(1)
                    .and_then(|rest| rest.split("</Account>").next())
                    .ok_or(("InternalFailure", format!("moto said {answer}")))?
                    .to_string();
                cache
                    .lock()
                    .expect("lock")
                    .insert(key.to_string(), account.clone());
                Ok(account)
            }
        }
    }
}

/// A fault injected for matching requests (`None` matches anything).
#[derive(Clone, Debug)]
pub struct Fault {
    pub account: Option<String>,
    pub region: Option<String>,
    pub kind: Option<String>,
    pub effect: Effect,
}

#[derive(Clone, Debug)]
pub enum Effect {
    /// Answer `ThrottlingException` to this many matching requests, then serve normally.
    Throttle { times: usize },
    /// Answer this error to this many matching requests, then serve normally: what a transient
    /// downstream failure (`GeneralServiceException`, `HandlerInternalFailureException`) does.
    Transient {
        code: String,
        message: String,
        times: usize,
    },
    /// Answer this error to every matching request.
    Error { code: String, message: String },
    /// Deny `ListRegions` for the account.
    DenyRegions,
    /// Answer an HTML page with this HTTP status instead of JSON, as moto does for a service it
    /// does not know and as proxies and load balancers do.
    Html { status: u16 },
    /// `ListResources` serves the first page again and again with `NextToken`s from a cycle of
    /// this many tokens (1: the same token forever).
    TokenCycle { tokens: usize },
    /// `ListResources` never ends: every page is empty and carries a new `NextToken`.
    EndlessTokens,
    /// The first `pages` pages of a listing are empty but carry a `NextToken`; then the items.
    EmptyPages { pages: usize },
    /// `ListRegions` answers its first page with this `NextToken`, whatever token it is sent.
    RegionsNextToken(String),
    /// `GetResource` answers without usable `Properties`: with this `ResourceDescription` (plus
    /// the `Identifier`), or (`None`) without a `ResourceDescription` at all.
    GetWithoutProperties { description: Option<Json> },
}

/// The HTML page moto answers for a service it does not implement.
pub const HTML_ERROR_PAGE: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request.</p>\n";

/// One request as received.
#[derive(Clone, Debug)]
pub struct CcCall {
    pub operation: String,
    pub account: String,
    pub region: String,
    pub kind: String,
    pub resource_model: Option<String>,
}

/// (account, region, kind)
type ScopeKey = (String, String, String);
/// (identifier, `ListResources` properties as sent, full model for `GetResource`)
type Stored = (String, String, Json);

#[derive(Default)]
struct Data {
    resources: HashMap<ScopeKey, Vec<Stored>>,
    regions: HashMap<String, Vec<String>>,
    faults: Vec<Fault>,
    calls: Vec<CcCall>,
    rejected_expired: usize,
    latency: Duration,
    organizations_error: String,
    /// The one ACTIVE account Organizations serves, when it serves any.
    organizations_account: Option<String>,
    /// (operation, token): this operation's pages all carry this `NextToken`.
    organizations_token: Option<(String, String)>,
}

struct CcState {
    keys: Keys,
    data: Mutex<Data>,
}

pub struct CloudControl {
    pub url: String,
    state: Arc<CcState>,
    _server: tokio::task::JoinHandle<()>,
}

impl CloudControl {
    pub async fn start(keys: Keys) -> CloudControl {
        let state = Arc::new(CcState {
            keys,
            data: Mutex::new(Data::default()),
        });
        let app = Router::new()
            .route("/", post(cloud_control))
            .route("/listRegions", post(list_regions))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Cloud Control stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CloudControl {
            url,
            state,
            _server: server,
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.state.data.lock().expect("lock")
    }

    /// Adds a resource whose list and get answers are the same properties.
    pub fn add(&self, account: &str, region: &str, kind: &str, identifier: &str, properties: Json) {
        self.add_raw(
            account,
            region,
            kind,
            identifier,
            &properties.to_string(),
            properties,
        );
    }

    /// Adds a resource with `ListResources` properties given verbatim (possibly invalid JSON) and
    /// the full model that `GetResource` returns.
    pub fn add_raw(
        &self,
        account: &str,
        region: &str,
        kind: &str,
        identifier: &str,
        list_properties: &str,
        full: Json,
    ) {
        self.data()
            .resources
            .entry((account.into(), region.into(), kind.into()))
            .or_default()
            .push((identifier.into(), list_properties.into(), full));
    }

    pub fn set_regions(&self, account: &str, regions: &[&str]) {
        self.data().regions.insert(
            account.into(),
            regions.iter().map(|r| r.to_string()).collect(),
        );
    }

    pub fn inject(&self, fault: Fault) {
        self.data().faults.push(fault);
    }

    /// The error code every Organizations call gets when pointed here.
    pub fn refuse_organizations(&self, code: &str) {
        self.data().organizations_error = code.to_string();
    }

    /// Serves Organizations itself: an organization of one ACTIVE account, `account`, in every
    /// OU, with no child OUs.
    pub fn serve_organization(&self, account: &str) {
        self.data().organizations_account = Some(account.into());
    }

    /// `operation` (`ListAccounts`, `ListAccountsForParent`, `ListOrganizationalUnitsForParent`)
    /// of [`serve_organization`](Self::serve_organization) returns `token` as its `NextToken` on
    /// every page.
    pub fn repeat_organizations_token(&self, operation: &str, token: &str) {
        self.data().organizations_token = Some((operation.into(), token.into()));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.data().latency = latency;
    }

    pub fn calls(&self) -> Vec<CcCall> {
        self.data().calls.clone()
    }

    /// Requests turned away because their credentials had expired.
    pub fn rejected_expired(&self) -> usize {
        self.data().rejected_expired
    }
}

fn json_error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": code, "Message": message}).to_string(),
    )
        .into_response()
}

/// The access key and region from a SigV4 `Authorization` header.
fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = credential.split('/');
    let key = parts.next()?.to_string();
    let _date = parts.next()?;
    let region = parts.next()?.to_string();
    Some((key, region))
}

impl CcState {
    /// The matching fault's answer, if any (consuming one use of a throttle).
    fn fault(
        &self,
        account: &str,
        region: &str,
        kind: Option<&str>,
        regions_call: bool,
    ) -> Option<Response> {
        let mut data = self.data.lock().expect("lock");
        for fault in data.faults.iter_mut() {
            let matches = fault.account.as_deref().is_none_or(|a| a == account)
                && fault.region.as_deref().is_none_or(|r| r == region)
                && fault.kind.as_deref().is_none_or(|k| Some(k) == kind);
            if !matches {
                continue;
            }
            match &mut fault.effect {
                Effect::DenyRegions if regions_call => {
                    return Some(
                        (
                            StatusCode::FORBIDDEN,
                            [("content-type", "application/json"), ("x-amzn-errortype", "AccessDeniedException")],
                            json!({"message": "User is not authorized to perform: account:ListRegions"}).to_string(),
                        )
                            .into_response(),
                    );
                }
                Effect::Throttle { times } if !regions_call && *times > 0 => {
                    *times -= 1;
                    return Some(json_error("ThrottlingException", "Rate exceeded"));
                }
                Effect::Transient {
                    code,
                    message,
                    times,
                } if !regions_call && *times > 0 => {
                    *times -= 1;
                    return Some(json_error(code, message));
                }
                Effect::Error { code, message } if !regions_call => {
                    return Some(json_error(code, message));
                }
                Effect::Html { status } if !regions_call => {
                    return Some(
                        (
                            StatusCode::from_u16(*status)
                                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                            [("content-type", "text/html; charset=utf-8")],
                            HTML_ERROR_PAGE,
                        )
                            .into_response(),
                    );
                }
                _ => {}
            }
        }
        None
    }

    /// The first fault that changes how `ListResources` pages, if any.
    fn paging(&self, account: &str, region: &str, kind: &str) -> Option<Effect> {
        let data = self.data.lock().expect("lock");
        data.faults
            .iter()
            .filter(|f| {
                f.account.as_deref().is_none_or(|a| a == account)
                    && f.region.as_deref().is_none_or(|r| r == region)
                    && f.kind.as_deref().is_none_or(|k| k == kind)
            })
            .map(|f| f.effect.clone())
            .find(|e| {
                matches!(
                    e,
                    Effect::TokenCycle { .. } | Effect::EndlessTokens | Effect::EmptyPages { .. }
                )
            })
    }

    async fn caller(&self, headers: &HeaderMap) -> Result<(String, String), Response> {
        let latency = self.data.lock().expect("lock").latency;
        let Some((key, region)) = credential_scope(headers) else {
            return Err(json_error(
                "MissingAuthenticationTokenException",
                "no credentials",
            ));
        };
        let account = match self.keys.account(&key).await {
            Ok(account) => account,
            Err((code, message)) => {
                if code == "ExpiredTokenException" {
                    self.data.lock().expect("lock").rejected_expired += 1;
                }
                return Err(json_error(code, &message));
            }
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        Ok((account, region))
    }
}

async fn cloud_control(
    State(state): State<Arc<CcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, region) = match state.caller(&headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Ok(input) = serde_json::from_slice::<Json>(&body) else {
        return json_error("SerializationException", "body is not JSON");
    };
    if let Some(operation) = target.strip_prefix("AWSOrganizationsV20161128.") {
        let (code, member, token) = {
            let data = state.data.lock().expect("lock");
            (
                data.organizations_error.clone(),
                data.organizations_account.clone(),
                data.organizations_token.clone(),
            )
        };
        if code.is_empty()
            && let Some(member) = member
        {
            let mut out = match operation {
                "ListOrganizationalUnitsForParent" => json!({"OrganizationalUnits": []}),
                _ => json!({"Accounts": [{"Id": member, "Name": "member", "Status": "ACTIVE",
                    "State": "ACTIVE", "Arn": format!("arn:aws:organizations::{member}:account/o-x/{member}")}]}),
            };
            if let Some((looping, token)) = token
                && operation == looping
            {
                out["NextToken"] = json!(token);
            }
            return (
                [("content-type", "application/x-amz-json-1.1")],
                out.to_string(),
            )
                .into_response();
        }
        // Stands in for an Organizations that refuses this caller (moto never does).
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            json!({"__type": code, "Message": "You don't have permissions to access this resource."}).to_string(),
        )
            .into_response();
    }
    let kind = input["TypeName"].as_str().unwrap_or_default().to_string();
    let operation = target
        .strip_prefix("CloudApiService.")
        .unwrap_or(&target)
        .to_string();
    state.data.lock().expect("lock").calls.push(CcCall {
        operation: operation.clone(),
        account: account.clone(),
        region: region.clone(),
        kind: kind.clone(),
        resource_model: input["ResourceModel"].as_str().map(str::to_string),
    });
    if let Some(response) = state.fault(&account, &region, Some(&kind), false) {
        return response;
    }
    let data = state.data.lock().expect("lock");
    let items = data
        .resources
        .get(&(account.clone(), region.clone(), kind.clone()))
        .cloned()
        .unwrap_or_default();
    drop(data);
    let ok = |body: Json| {
        (
            [("content-type", "application/x-amz-json-1.0")],
            body.to_string(),
        )
            .into_response()
    };
    match operation.as_str() {
        "ListResources" => {
            let token = input["NextToken"].as_str().unwrap_or_default();
            let numbered = |prefix: &str| -> usize {
                token
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let empty = |next: String| json!({"TypeName": kind, "ResourceDescriptions": [], "NextToken": next});
            let mut start = numbered("page-");
            match state.paging(&account, &region, &kind) {
                Some(Effect::EndlessTokens) => {
                    return ok(empty(format!("endless-{}", numbered("endless-") + 1)));
                }
                Some(Effect::EmptyPages { pages }) if !token.starts_with("page-") => {
                    let served = numbered("empty-");
                    if served < pages {
                        return ok(empty(format!("empty-{}", served + 1)));
                    }
                    start = 0;
                }
                Some(Effect::TokenCycle { tokens }) => {
                    let next = (numbered("cycle-") + 1) % tokens.max(1);
                    let page: Vec<Json> = items
                        .iter()
                        .take(PAGE_SIZE)
                        .map(|(id, props, _)| json!({"Identifier": id, "Properties": props}))
                        .collect();
                    return ok(json!({"TypeName": kind, "ResourceDescriptions": page,
                                     "NextToken": format!("cycle-{next}")}));
                }
                _ => {}
            }
            let page: Vec<Json> = items
                .iter()
                .skip(start)
                .take(PAGE_SIZE)
                .map(|(id, props, _)| json!({"Identifier": id, "Properties": props}))
                .collect();
            let mut out = json!({"TypeName": kind, "ResourceDescriptions": page});
            if start + PAGE_SIZE < items.len() {
                out["NextToken"] = json!(format!("page-{}", start + PAGE_SIZE));
            }
            ok(out)
        }
        "GetResource" => {
            let id = input["Identifier"].as_str().unwrap_or_default();
            let bare = state
                .data
                .lock()
                .expect("lock")
                .faults
                .iter()
                .find_map(|f| {
                    let matches = f.account.as_deref().is_none_or(|a| a == account)
                        && f.region.as_deref().is_none_or(|r| r == region)
                        && f.kind.as_deref().is_none_or(|k| k == kind);
                    match &f.effect {
                        Effect::GetWithoutProperties { description } if matches => {
                            Some(description.clone())
                        }
                        _ => None,
                    }
                });
            match bare {
                Some(Some(mut description)) => {
                    description["Identifier"] = json!(id);
                    return ok(json!({"TypeName": kind, "ResourceDescription": description}));
                }
                Some(None) => return ok(json!({"TypeName": kind})),
                None => {}
            }
            // A null full model stands for a resource deleted between the list and the get.
            match items.iter().find(|(i, _, full)| i == id && !full.is_null()) {
                Some((id, _, full)) => ok(json!({"TypeName": kind,
                    "ResourceDescription": {"Identifier": id, "Properties": full.to_string()}})),
                None => json_error("ResourceNotFoundException", &format!("{id} not found")),
            }
        }
        other => json_error(
            "UnknownOperationException",
            &format!("the stand-in does not serve {other}"),
        ),
    }
}

async fn list_regions(
    State(state): State<Arc<CcState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, region) = match state.caller(&headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if let Some(response) = state.fault(&account, &region, None, true) {
        return response;
    }
    let input: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    let regions = state
        .data
        .lock()
        .expect("lock")
        .regions
        .get(&account)
        .cloned()
        .unwrap_or_else(|| vec!["us-east-1".to_string()]);
    let start: usize = input["NextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<Json> = regions
        .iter()
        .skip(start)
        .take(REGIONS_PAGE_SIZE)
        .map(|r| json!({"RegionName": r, "RegionOptStatus": "ENABLED_BY_DEFAULT"}))
        .collect();
    let mut out = json!({"Regions": page});
    if start + REGIONS_PAGE_SIZE < regions.len() {
        out["NextToken"] = json!((start + REGIONS_PAGE_SIZE).to_string());
    }
    let repeated = state
        .data
        .lock()
        .expect("lock")
        .faults
        .iter()
        .find_map(|f| match &f.effect {
            Effect::RegionsNextToken(token)
                if f.account.as_deref().is_none_or(|a| a == account) =>
            {
                Some(token.clone())
            }
            _ => None,
        });
    if let Some(token) = repeated {
        out["NextToken"] = json!(token);
    }
    ([("content-type", "application/json")], out.to_string()).into_response()
}
