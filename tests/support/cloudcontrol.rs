//! A Cloud Control stand-in (moto has none): the real JSON 1.0 protocol
//! (`X-Amz-Target: CloudApiService.ListResources|GetResource`, `Properties` as a JSON string,
//! errors as `{"__type", "Message"}` with HTTP 400), resources kept per account as the caller's
//! access key says, pages of 3 items, and injectable throttling, errors and latency. It also
//! serves `account:ListRegions` (restJson1, `POST /listRegions`), which moto lacks.
//!
//! It answers as AWS does, not as tidemark expects (sources: /work/notes/aws-kinds.md and
//! reference/aws.md "Cloud Control as it really behaves"):
//! - S3 buckets live in one region, but `ListResources` lists every bucket of the account from any
//!   region, with only `BucketName`; `GetResource` answers from the bucket's own region, never
//!   across an opt-in region (`ResourceNotFoundException`), and between two standard regions as
//!   [`CrossRegion`] says (aws-toolkit-vscode #2193, aws-cli #6464, awscc #2124, Ocean PR #2681).
//! - `ListRegions` says `ENABLED` for opt-in regions and `ENABLED_BY_DEFAULT` for the others.
//! - Child types (`handlers.list.handlerSchema.required` in their schema) list only with their
//!   parent in `ResourceModel`, one parent per call; without it they answer
//!   `InvalidRequestException` as Cloud Control words it, and for a parent that does not exist
//!   `ResourceNotFoundException` ([`CHILD_TYPES`]).
//! - Some list handlers stop at a fixed number of items and return no `NextToken` after it
//!   ([`LIST_CAPS`]).

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
    /// `GetResource`'s `Identifier`; empty for `ListResources`.
    pub identifier: String,
    pub resource_model: Option<String>,
}

/// The regions enabled by default in every account (launched before 20 March 2019); every
/// later region is opt-in. AWS's list, kept here apart from tidemark's own.
const STANDARD_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];

/// Whether AWS treats `region` as opt-in (China, GovCloud and the ISO partitions have none).
pub fn is_opt_in(region: &str) -> bool {
    let other_partition = ["cn-", "us-gov-", "us-iso", "eu-isoe-", "eusc-"]
        .iter()
        .any(|p| region.starts_with(p));
    !other_partition && !STANDARD_REGIONS.contains(&region)
}

const BUCKET: &str = "AWS::S3::Bucket";

/// List handlers that stop at a number of items and return no `NextToken` after it: SQS's
/// returned 1,000 of 1,500 queues (port-labs/ocean#1453, aws/aws-cli#9314), as SQS ListQueues
/// does without MaxResults.
pub const LIST_CAPS: &[(&str, usize)] = &[("AWS::SQS::Queue", 1000)];

/// Types whose list handler needs their parent in `ResourceModel`: (type, the required property,
/// the parent type, whose `Identifier` that property holds). From the types' schemas
/// (`handlers.list.handlerSchema`) in hashicorp/terraform-provider-awscc.
pub const CHILD_TYPES: &[(&str, &str, &str)] = &[
    ("AWS::EKS::Nodegroup", "ClusterName", "AWS::EKS::Cluster"),
    ("AWS::EKS::Addon", "ClusterName", "AWS::EKS::Cluster"),
    (
        "AWS::EKS::FargateProfile",
        "ClusterName",
        "AWS::EKS::Cluster",
    ),
    (
        "AWS::ElasticLoadBalancingV2::Listener",
        "LoadBalancerArn",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
    ),
    (
        "AWS::ApiGateway::Stage",
        "RestApiId",
        "AWS::ApiGateway::RestApi",
    ),
    (
        "AWS::ApiGateway::Resource",
        "RestApiId",
        "AWS::ApiGateway::RestApi",
    ),
];

/// How `GetResource` answers for a bucket asked for from a standard region other than its own.
/// Across an opt-in region (either side) AWS answers `ResourceNotFoundException` whatever this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrossRegion {
    /// The full model, as awscc #2124 saw in 2024.
    #[default]
    Served,
    /// `ResourceNotFoundException`: "the subsequent GET operation is region scoped"
    /// (aws-toolkit-vscode #2193).
    NotFound,
    /// `PermanentRedirect` with HTTP 301, as aws-cli #6464 saw in 2021.
    Redirect,
}

/// A bucket: its name, the region it lives in, and its full model (`Null`: deleted after the
/// listing).
#[derive(Clone, Debug)]
struct Bucket {
    name: String,
    home: String,
    full: Json,
}

impl Bucket {
    /// The model `GetResource` returns: the read-only properties AWS always fills in, added to
    /// what the test gave.
    fn model(&self) -> Json {
        let mut model = self.full.clone();
        let suffix = if self.home.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let partition = if self.home.starts_with("cn-") {
            "aws-cn"
        } else if self.home.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        if let Some(fields) = model.as_object_mut() {
            let name = &self.name;
            let home = &self.home;
            fields.entry("BucketName").or_insert_with(|| json!(name));
            fields
                .entry("Arn")
                .or_insert_with(|| json!(format!("arn:{partition}:s3:::{name}")));
            fields
                .entry("DomainName")
                .or_insert_with(|| json!(format!("{name}.s3.{suffix}")));
            fields
                .entry("RegionalDomainName")
                .or_insert_with(|| json!(format!("{name}.s3.{home}.{suffix}")));
        }
        model
    }
}

/// (account, region, kind)
type ScopeKey = (String, String, String);
/// (identifier, `ListResources` properties as sent, full model for `GetResource`)
type Stored = (String, String, Json);

#[derive(Default)]
struct Data {
    resources: HashMap<ScopeKey, Vec<Stored>>,
    /// Per account: S3 is account-wide in its listing and regional in its reads.
    buckets: HashMap<String, Vec<Bucket>>,
    cross_region: CrossRegion,
    regions: HashMap<String, Vec<String>>,
    faults: Vec<Fault>,
    calls: Vec<CcCall>,
    rejected_expired: usize,
    latency: Duration,
    /// Items per `ListResources` page; 0 means [`PAGE_SIZE`].
    page_size: usize,
    organizations_error: String,
    /// The one ACTIVE account Organizations serves, when it serves any.
    organizations_accounts: Vec<String>,
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

    /// Adds a resource whose list and get answers are the same properties, whatever its type's
    /// list handler really returns ([`add_resource`](Self::add_resource) answers that). A bucket
    /// (`AWS::S3::Bucket`) lives in `region` and is listed as S3 lists: see [`add_bucket`](Self::add_bucket).
    pub fn add(&self, account: &str, region: &str, kind: &str, identifier: &str, properties: Json) {
        if kind == BUCKET {
            return self.add_bucket(account, region, identifier, properties);
        }
        self.add_raw(
            account,
            region,
            kind,
            identifier,
            &properties.to_string(),
            properties,
        );
    }

    /// Adds an SQS queue `name` in `account`'s us-east-1 as [`sqs_queue`](super::fixtures::sqs_queue)
    /// records it, identified by its URL, with `more` (an object) added to its properties.
    pub fn add_sqs_queue(&self, account: &str, name: &str, more: Json) {
        let mut queue = super::fixtures::sqs_queue(account, "us-east-1", name);
        let mut properties = queue["Properties"].take();
        if let (Some(properties), Json::Object(more)) = (properties.as_object_mut(), more) {
            properties.extend(more);
        }
        let identifier = queue["Identifier"].as_str().expect("identifier");
        self.add(
            account,
            "us-east-1",
            "AWS::SQS::Queue",
            identifier,
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

    /// Adds a resource as AWS holds it: `GetResource` answers `full`, and `ListResources` what
    /// the type's list handler returns of it ([`super::list_models`]: only the identifier for
    /// many types, everything but the tags for others).
    pub fn add_resource(
        &self,
        account: &str,
        region: &str,
        kind: &str,
        identifier: &str,
        full: Json,
    ) {
        if kind == BUCKET {
            return self.add_bucket(account, region, identifier, full);
        }
        let listed = super::list_models::list_model(kind, &full);
        self.add_raw(account, region, kind, identifier, &listed.to_string(), full);
    }

    /// Adds a bucket that lives in `home`, with the full model `GetResource` returns there
    /// (`Null`: deleted after the listing). Every region's `ListResources` lists it, with only
    /// `BucketName`.
    pub fn add_bucket(&self, account: &str, home: &str, name: &str, full: Json) {
        self.data()
            .buckets
            .entry(account.into())
            .or_default()
            .push(Bucket {
                name: name.into(),
                home: home.into(),
                full,
            });
    }

    /// How a bucket is answered from a standard region that is not its own.
    pub fn set_cross_region(&self, answer: CrossRegion) {
        self.data().cross_region = answer;
    }

    pub fn set_regions(&self, account: &str, regions: &[&str]) {
        self.data().regions.insert(
            account.into(),
            regions.iter().map(|r| r.to_string()).collect(),
        );
    }

    /// `kind` does not exist in `region` (any account): `TypeNotFoundException`, as a region's
    /// CloudFormation registry answers for a type it does not have.
    pub fn type_missing_in(&self, region: &str, kind: &str) {
        self.inject(Fault {
            account: None,
            region: Some(region.into()),
            kind: Some(kind.into()),
            effect: Effect::Error {
                code: "TypeNotFoundException".into(),
                message: format!("The type '{kind}' cannot be found."),
            },
        });
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
        self.serve_organization_of(&[account]);
    }

    /// [`serve_organization`](Self::serve_organization) with these ACTIVE accounts, all on one
    /// page.
    pub fn serve_organization_of(&self, accounts: &[&str]) {
        self.data().organizations_accounts = accounts.iter().map(|a| a.to_string()).collect();
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

    /// Items per `ListResources` page from now on (AWS's own vary by type; simulations use 25).
    pub fn set_page_size(&self, items: usize) {
        self.data().page_size = items;
    }

    /// How many calls were served so far (cheaper than [`calls`](Self::calls) for big runs).
    pub fn call_count(&self) -> usize {
        self.data().calls.len()
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
                data.organizations_accounts.clone(),
                data.organizations_token.clone(),
            )
        };
        if code.is_empty() && !member.is_empty() {
            let accounts: Vec<Json> = member
                .iter()
                .map(|id| {
                    json!({"Id": id, "Name": format!("member-{id}"), "Status": "ACTIVE",
                           "State": "ACTIVE", "Arn": format!("arn:aws:organizations::{id}:account/o-x/{id}")})
                })
                .collect();
            let mut out = match operation {
                "ListOrganizationalUnitsForParent" => json!({"OrganizationalUnits": []}),
                _ => json!({ "Accounts": accounts }),
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
        identifier: input["Identifier"].as_str().unwrap_or_default().to_string(),
        resource_model: input["ResourceModel"].as_str().map(str::to_string),
    });
    if let Some(response) = state.fault(&account, &region, Some(&kind), false) {
        return response;
    }
    let data = state.data.lock().expect("lock");
    let items = if kind == BUCKET {
        // Every bucket of the account, whatever the region asked, with only its name.
        data.buckets
            .get(&account)
            .into_iter()
            .flatten()
            .map(|b| {
                let listed = json!({"BucketName": b.name}).to_string();
                (b.name.clone(), listed, b.model())
            })
            .collect()
    } else {
        data.resources
            .get(&(account.clone(), region.clone(), kind.clone()))
            .cloned()
            .unwrap_or_default()
    };
    // A child type lists one parent's children, named in ResourceModel, or answers an error.
    let child = CHILD_TYPES.iter().find(|(child, _, _)| *child == kind);
    let items = match (child, operation.as_str()) {
        (Some((_, property, parent)), "ListResources") => {
            let model: Option<Json> = input["ResourceModel"]
                .as_str()
                .and_then(|m| serde_json::from_str(m).ok());
            let Some(wanted) = model
                .as_ref()
                .and_then(|m| m.get(*property))
                .and_then(Json::as_str)
            else {
                drop(data);
                return json_error(
                    "InvalidRequestException",
                    &format!(
                        "Missing Or Invalid ResourceModel property in {kind} list handler request input. Required property: [{property}]"
                    ),
                );
            };
            let parents = data
                .resources
                .get(&(account.clone(), region.clone(), parent.to_string()))
                .cloned()
                .unwrap_or_default();
            if !parents.iter().any(|(id, _, _)| id == wanted) {
                drop(data);
                return json_error(
                    "ResourceNotFoundException",
                    &format!("{parent} {wanted} not found"),
                );
            }
            items
                .into_iter()
                .filter(|(_, _, full)| full.get(*property).and_then(Json::as_str) == Some(wanted))
                .collect()
        }
        _ => items,
    };
    let bucket_read = (kind == BUCKET).then(|| {
        let id = input["Identifier"].as_str().unwrap_or_default();
        let bucket = data
            .buckets
            .get(&account)
            .and_then(|all| all.iter().find(|b| b.name == id && !b.full.is_null()))
            .cloned();
        (bucket, data.cross_region)
    });
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
            let page_size = match state.data.lock().expect("lock").page_size {
                0 => PAGE_SIZE,
                n => n,
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
                        .take(page_size)
                        .map(|(id, props, _)| json!({"Identifier": id, "Properties": props}))
                        .collect();
                    return ok(json!({"TypeName": kind, "ResourceDescriptions": page,
                                     "NextToken": format!("cycle-{next}")}));
                }
                _ => {}
            }
            // A capped handler has only its first `cap` items to page through, and says nothing.
            let end = LIST_CAPS
                .iter()
                .find(|(capped, _)| *capped == kind)
                .map_or(items.len(), |(_, cap)| items.len().min(*cap));
            let page: Vec<Json> = items[..end]
                .iter()
                .skip(start)
                .take(page_size)
                .map(|(id, props, _)| json!({"Identifier": id, "Properties": props}))
                .collect();
            let mut out = json!({"TypeName": kind, "ResourceDescriptions": page});
            if start + page_size < end {
                out["NextToken"] = json!(format!("page-{}", start + page_size));
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
            if let Some((bucket, cross_region)) = bucket_read {
                return match bucket {
                    None => json_error("ResourceNotFoundException", &format!("{id} not found")),
                    Some(b) if b.home == region => ok(json!({"TypeName": kind,
                        "ResourceDescription": {"Identifier": id, "Properties": b.model().to_string()}})),
                    Some(b) if is_opt_in(&b.home) || is_opt_in(&region) => {
                        json_error("ResourceNotFoundException", &format!("{id} not found"))
                    }
                    Some(b) => match cross_region {
                        CrossRegion::Served => ok(json!({"TypeName": kind,
                            "ResourceDescription": {"Identifier": id, "Properties": b.model().to_string()}})),
                        CrossRegion::NotFound => {
                            json_error("ResourceNotFoundException", &format!("{id} not found"))
                        }
                        CrossRegion::Redirect => (
                            StatusCode::MOVED_PERMANENTLY,
                            [("content-type", "application/x-amz-json-1.0")],
                            json!({"__type": "PermanentRedirect",
                                   "Message": format!("The bucket you are attempting to access must be addressed using the specified endpoint ({}).", b.home)})
                            .to_string(),
                        )
                            .into_response(),
                    },
                };
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
        .map(|r| {
            let status = if is_opt_in(r) {
                "ENABLED"
            } else {
                "ENABLED_BY_DEFAULT"
            };
            json!({"RegionName": r, "RegionOptStatus": status})
        })
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
