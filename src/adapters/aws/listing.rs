//! Cloud Control listing of one (account, region, kind): every page of `ListResources`, optional
//! `GetResource` per item, retries for throttling and transient failures, and the error classes
//! that fail a scope.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_cloudcontrol::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::credentials::RoleCredentials;
use super::pages::Pages;
use super::throttle::{MAX_ATTEMPTS, TokenBucket, backoff};
use crate::adapters::requests::{Outcome, RequestCounter};
use crate::core::model::{KindSpec, RawItem};
use crate::core::regions;
use crate::core::report::{MAX_PROPERTIES_DEPTH, is_region_name, is_too_deep};

/// The `service` label of Cloud Control requests in the metrics.
pub(crate) const CLOUD_CONTROL: &str = "cloudcontrol";

/// `GetResource` calls in flight per scope; the token bucket still paces them.
const GET_RESOURCE_FAN_OUT: usize = 8;

/// Cloud Control error codes that no retry will fix.
const PERMANENT: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnsupportedActionException",
    "TypeNotFoundException",
    "InvalidRequestException",
    "ResourceNotFoundException",
    "UnauthorizedOperation",
];
/// Permanent for a type in a region, whatever the account: remembered for the run.
const PERMANENT_FOR_TYPE: &[&str] = &["UnsupportedActionException", "TypeNotFoundException"];
/// What a region answers when it will not serve this account at all (a service control policy
/// that denies it, an opt-in region that is not enabled) or does not have the type: a global
/// kind is then listed from the next region instead (Ocean `integrations/aws` 0.3.85 does the
/// same). Retries that ran out on a network error count too: the region's endpoint is unreachable.
const REGION_REFUSED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AuthFailure",
    "RegionDisabledException",
    "OptInRequired",
    "TypeNotFoundException",
    "UnsupportedActionException",
    "NetworkError",
];
const NOT_FOUND: &str = "ResourceNotFoundException";
/// The one type whose listing is account-wide while its reads are regional.
pub(crate) const S3_BUCKET: &str = "AWS::S3::Bucket";

/// A list handler that stops at a fixed number of items and returns no `NextToken`, so a
/// listing of exactly that many may have been cut short without a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListCap {
    pub kind: &'static str,
    pub cap: usize,
    /// Where the cap was seen, for the message that names it.
    pub source: &'static str,
}

/// Every known cap, in one place. Add a row only with evidence; the handlers that could be read
/// (ECR, KMS, SNS, Step Functions, RDS) forward the service's token and have none.
pub(crate) const LIST_CAPS: &[ListCap] = &[ListCap {
    kind: "AWS::SQS::Queue",
    cap: 1000,
    // SQS ListQueues returns at most 1,000 queues and no token unless MaxResults is set, and
    // the handler does not set it.
    source: "Cloud Control's SQS list handler returned 1,000 of 1,500 queues with no NextToken: port-labs/ocean#1453, aws/aws-cli#9314",
}];

/// Why a listing of `kind` that ended after `count` items may be incomplete.
fn truncated(kind: &str, count: usize) -> Option<ScopeFailure> {
    let cap = LIST_CAPS
        .iter()
        .find(|c| c.kind == kind && c.cap == count)?;
    Some(ScopeFailure::new(
        "PossiblyTruncated",
        format!(
            "{kind} listed exactly {} items and no NextToken; its list handler stops at {} without saying so ({}), so more may exist",
            cap.cap, cap.cap, cap.source
        ),
    ))
}
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailableException",
    "ServiceInternalErrorException",
    "InternalFailure",
    // The `fault` errors of the Cloud Control model: the handler or the network failed on the
    // server's side, which the next attempt may not.
    "HandlerInternalFailureException",
    "HandlerFailureException",
    "NetworkFailureException",
];
/// Cloud Control's wrapper for a downstream service error that maps to no other handler code.
/// Often transient, so retried like throttling; but the downstream condition is only in its
/// message (Ocean PR #2287), and a denial or a missing resource will not change on retry.
const GENERAL_SERVICE: &str = "GeneralServiceException";
/// Message fragments (lowercase) of a `GeneralServiceException` that no retry fixes, as Ocean
/// matches them (`integrations/aws/utils/misc.py`).
const GENERAL_SERVICE_PERMANENT: &[&str] = &[
    "access denied",
    "accessdenied",
    "not authorized",
    "unauthorized",
    "forbidden",
    "permission denied",
    "not found",
    "notfound",
    "does not exist",
    "resourcenotfound",
];
/// Message fragments (lowercase) of a `GeneralServiceException` that says the type is not
/// available in the region asked (Ocean PRs #2862 and #3003 match the same).
const GENERAL_SERVICE_UNAVAILABLE: &[&str] = &[
    "type not found",
    "is not registered",
    "not available in this region",
    "resource type is not available",
];

/// Whether a failure says the type does not exist in the region asked: nothing there to list.
pub(crate) fn is_unavailable(failure: &ScopeFailure) -> bool {
    PERMANENT_FOR_TYPE.contains(&failure.code.as_str())
        || (failure.code == GENERAL_SERVICE && {
            let message = failure.message.to_ascii_lowercase();
            GENERAL_SERVICE_UNAVAILABLE
                .iter()
                .any(|m| message.contains(m))
        })
}
const EXPIRED: &[&str] = &["ExpiredTokenException", "ExpiredToken", "RequestExpired"];

/// Why a scope failed, as it goes into the plan's `scopes`: `Code: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ScopeFailure {
    pub code: String,
    pub message: String,
}

impl ScopeFailure {
    fn new(code: impl Into<String>, message: impl Into<String>) -> ScopeFailure {
        ScopeFailure {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Types that Cloud Control said it cannot list in a region, so no account asks again this run.
#[derive(Debug, Default)]
pub(crate) struct Remembered(Mutex<HashMap<(String, String), ScopeFailure>>);

impl Remembered {
    pub(crate) fn get(&self, region: &str, kind: &str) -> Option<ScopeFailure> {
        let map = self.0.lock().ok()?;
        map.get(&(region.to_string(), kind.to_string())).cloned()
    }

    /// Remembers `failure`; whether it is news (the first account to learn it this run).
    fn remember(&self, region: &str, kind: &str, failure: &ScopeFailure) -> bool {
        match self.0.lock() {
            Ok(mut map) => map
                .insert((region.to_string(), kind.to_string()), failure.clone())
                .is_none(),
            Err(_) => false,
        }
    }
}

/// Where each S3 bucket was found, per (account, bucket), kept for the source's lifetime: a bucket
/// outside the listing region costs a read per region tried the first time, and one read after.
#[derive(Debug, Default)]
pub(crate) struct BucketRegions(Mutex<HashMap<(String, String), String>>);

impl BucketRegions {
    fn get(&self, account: &str, bucket: &str) -> Option<String> {
        let map = self.0.lock().ok()?;
        map.get(&(account.to_string(), bucket.to_string())).cloned()
    }

    fn remember(&self, account: &str, bucket: &str, region: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(
                (account.to_string(), bucket.to_string()),
                region.to_string(),
            );
        }
    }

    fn forget(&self, account: &str, bucket: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(account.to_string(), bucket.to_string()));
        }
    }
}

/// One account's Cloud Control client and pacing, shared by all its scopes.
pub(crate) struct AccountLister {
    pub account: String,
    pub account_name: Option<String>,
    /// Every region of the account (not only those a kind's policy admits): a bucket may live
    /// in any of them.
    pub regions: Vec<String>,
    /// Whether `regions` are the account's enabled regions (`regions: enabled`), so that a bucket
    /// found in none of them is gone; a configured list may leave out the one it lives in.
    pub regions_are_enabled: bool,
    pub bucket_regions: Arc<BucketRegions>,
    pub client: aws_sdk_cloudcontrol::Client,
    /// Present for assumed roles, so that credentials a service calls expired are renewed.
    pub role: Option<Arc<RoleCredentials>>,
    pub requests_per_second: f64,
    pub buckets: Mutex<HashMap<String, Arc<TokenBucket>>>,
    /// The source's request counter, shared by every account.
    pub requests: Arc<RequestCounter>,
}

enum Attempt {
    Retry(ScopeFailure),
    Expired(ScopeFailure),
    Fail(ScopeFailure),
}

fn classify<E>(err: &SdkError<E>) -> Attempt
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err.code() {
        Some(code) => {
            let failure = ScopeFailure::new(code, err.message().unwrap_or_default());
            if EXPIRED.contains(&code) {
                Attempt::Expired(failure)
            } else if code == GENERAL_SERVICE {
                let message = failure.message.to_ascii_lowercase();
                if GENERAL_SERVICE_PERMANENT
                    .iter()
                    .chain(GENERAL_SERVICE_UNAVAILABLE)
                    .any(|m| message.contains(m))
                {
                    Attempt::Fail(failure)
                } else {
                    Attempt::Retry(failure)
                }
            } else if THROTTLING.contains(&code) || matches!(status, Some(429 | 500..=599)) {
                Attempt::Retry(failure)
            } else if PERMANENT.contains(&code) {
                Attempt::Fail(failure)
            } else {
                // An unknown 4xx code is most likely a request we got wrong: retrying won't help.
                Attempt::Fail(failure)
            }
        }
        None => match (err, err.raw_response()) {
            (SdkError::ConstructionFailure(_), _) => Attempt::Fail(ScopeFailure::new(
                "RequestFailed",
                DisplayErrorContext(err).to_string(),
            )),
            // An answer without an AWS error code: an HTML page from a proxy, a load balancer or
            // an endpoint that is not Cloud Control. Its body is not echoed whole: it may be
            // large, and a proxy may reflect request headers into it.
            (_, Some(raw)) => {
                let status = raw.status().as_u16();
                let failure = ScopeFailure::new(
                    format!("HTTP{status}"),
                    unexpected_answer(
                        status,
                        raw.headers().get("content-type"),
                        raw.body().bytes(),
                    ),
                );
                // A 4xx page will say the same next time; gateway errors and garbled answers
                // are transient until retries run out.
                if (400..500).contains(&status) && !matches!(status, 408 | 429) {
                    Attempt::Fail(failure)
                } else {
                    Attempt::Retry(failure)
                }
            }
            // Timeouts and refused connections are transient until proven otherwise.
            (_, None) => Attempt::Retry(ScopeFailure::new(
                "NetworkError",
                DisplayErrorContext(err).to_string(),
            )),
        },
    }
}

/// How an error answer counts in the request metrics: throttling apart from other failures, so
/// that a dashboard shows when `requestsPerSecond` is set too high.
pub(crate) fn outcome_of<E>(err: &SdkError<E>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let throttled_code = err.code().is_some_and(|code| {
        matches!(
            code,
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
        )
    });
    let status = err.raw_response().map(|r| r.status().as_u16());
    if throttled_code || status == Some(429) {
        Outcome::Throttled
    } else {
        Outcome::Failed
    }
}

/// What to say about an answer that is not Cloud Control's JSON: its status, content type and,
/// for an HTML page, its title.
fn unexpected_answer(status: u16, content_type: Option<&str>, body: Option<&[u8]>) -> String {
    let content_type = content_type.unwrap_or("no content type");
    let title = body
        .map(String::from_utf8_lossy)
        .and_then(|text| {
            let lower = text.to_ascii_lowercase();
            let start = lower.find("<title>")? + "<title>".len();
            let end = start + lower[start..].find("</title>")?;
            let title: String = text
                .get(start..end)?
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_TITLE_CHARS)
                .collect();
            Some(title.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    let what = if content_type.contains("json") {
        "JSON that is not a Cloud Control answer"
    } else {
        "a body that is not JSON"
    };
    match title {
        Some(title) => {
            format!("Cloud Control answered HTTP {status} with {what} ({content_type}): {title:?}")
        }
        None => format!("Cloud Control answered HTTP {status} with {what} ({content_type})"),
    }
}

/// Enough of an error page's title to recognise it.
const MAX_TITLE_CHARS: usize = 80;

impl AccountLister {
    fn bucket(&self, region: &str) -> Arc<TokenBucket> {
        match self.buckets.lock() {
            Ok(mut buckets) => buckets
                .entry(region.to_string())
                .or_insert_with(|| Arc::new(TokenBucket::new(self.requests_per_second)))
                .clone(),
            Err(_) => Arc::new(TokenBucket::new(self.requests_per_second)),
        }
    }

    /// Runs one Cloud Control call with pacing and retries, counting every attempt as `operation`.
    async fn call<T, E, F, Fut>(
        &self,
        bucket: &TokenBucket,
        operation: &'static str,
        mut send: F,
    ) -> Result<T, ScopeFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut attempt = 0;
        loop {
            bucket.acquire().await;
            let err = match send().await {
                Ok(out) => {
                    self.requests.attempt(CLOUD_CONTROL, operation, Outcome::Ok);
                    return Ok(out);
                }
                Err(err) => err,
            };
            self.requests
                .attempt(CLOUD_CONTROL, operation, outcome_of(&err));
            attempt += 1;
            let failure = match classify(&err) {
                Attempt::Fail(f) => return Err(f),
                Attempt::Retry(f) => f,
                Attempt::Expired(f) => {
                    if let Some(role) = &self.role {
                        role.invalidate();
                    }
                    f
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(ScopeFailure::new(
                    failure.code,
                    format!(
                        "{} (gave up after {MAX_ATTEMPTS} attempts)",
                        failure.message
                    ),
                ));
            }
            let wait = backoff(attempt - 1);
            self.requests.retry(CLOUD_CONTROL, operation);
            tracing::debug!(account = %self.account, code = %failure.code, ?wait, attempt, "retrying Cloud Control call");
            tokio::time::sleep(wait).await;
        }
    }

    /// Lists one scope, sending each page's items to `out` as it arrives. Items sent before a
    /// failure stay sent (creates and updates may go ahead); the failure marks the scope incomplete.
    pub(crate) async fn list_scope(
        self: &Arc<Self>,
        region: &str,
        spec: &KindSpec,
        remembered: &Remembered,
        out: &mpsc::Sender<Vec<RawItem>>,
    ) -> Result<(), ScopeFailure> {
        self.list_in(region, spec, remembered, out, &mut 0).await
    }

    /// Lists a global kind from the first region of `order` that serves it: a region that refuses
    /// before any item arrived ([`REGION_REFUSED`]) passes the listing to the next. Returns the
    /// region that listed (or, when every region refused, the first), and how it went.
    pub(crate) async fn list_global(
        self: &Arc<Self>,
        order: &[String],
        spec: &KindSpec,
        remembered: &Remembered,
        out: &mpsc::Sender<Vec<RawItem>>,
    ) -> (String, Result<(), ScopeFailure>) {
        let mut refusals: Vec<(String, ScopeFailure)> = Vec::new();
        for region in order {
            let mut sent = 0;
            match self.list_in(region, spec, remembered, out, &mut sent).await {
                Err(failure) if sent == 0 && REGION_REFUSED.contains(&failure.code.as_str()) => {
                    tracing::info!(account = %self.account, %region, kind = %spec.kind, error = %failure, "region refused a global kind; trying the next region");
                    refusals.push((region.clone(), failure));
                }
                result => return (region.clone(), result),
            }
        }
        let Some((first_region, first)) = refusals.first().cloned() else {
            return (
                String::new(),
                Err(ScopeFailure::new("NoRegion", "no region admits this kind")),
            );
        };
        let tried: Vec<String> = refusals
            .iter()
            .map(|(region, failure)| format!("{region}: {failure}"))
            .collect();
        // Missing from every region only when no region refused for another reason.
        let code = refusals
            .iter()
            .map(|(_, f)| f)
            .find(|f| !is_unavailable(f))
            .unwrap_or(&first)
            .code
            .clone();
        (
            first_region,
            Err(ScopeFailure::new(
                code,
                format!("every region refused it: {}", tried.join("; ")),
            )),
        )
    }

    /// One listing in one region, counting the items handed on in `sent`.
    async fn list_in(
        self: &Arc<Self>,
        region: &str,
        spec: &KindSpec,
        remembered: &Remembered,
        out: &mpsc::Sender<Vec<RawItem>>,
        sent: &mut usize,
    ) -> Result<(), ScopeFailure> {
        if let Some(failure) = remembered.get(region, &spec.kind) {
            return Err(failure);
        }
        let result = self.list_pages(region, spec, out, sent).await;
        if let Err(failure) = &result
            && is_unavailable(failure)
            && remembered.remember(region, &spec.kind, failure)
        {
            // One line per (region, kind) and run: every account gets the same answer.
            tracing::info!(%region, kind = %spec.kind, error = %failure, "the type does not exist in this region; its listings there count as empty unless owned entities may have come from there");
        }
        result
    }

    async fn list_pages(
        self: &Arc<Self>,
        region: &str,
        spec: &KindSpec,
        out: &mpsc::Sender<Vec<RawItem>>,
        sent: &mut usize,
    ) -> Result<(), ScopeFailure> {
        let bucket = self.bucket(region);
        let resource_model = spec.model();
        let mut next_token: Option<String> = None;
        let mut pages = Pages::new();
        let mut unreadable = Unreadable::default();
        let mut count = 0usize;
        loop {
            let page = self
                .call(&bucket, "ListResources", || {
                    self.client
                        .list_resources()
                        .type_name(&spec.kind)
                        .set_resource_model(resource_model.clone())
                        .set_next_token(next_token.clone())
                        .customize()
                        .config_override(aws_sdk_cloudcontrol::config::Builder::default().region(
                            aws_sdk_cloudcontrol::config::Region::new(region.to_string()),
                        ))
                        .send()
                })
                .await?;
            count += page.resource_descriptions().len();
            let mut listed = Vec::with_capacity(page.resource_descriptions().len());
            for description in page.resource_descriptions() {
                let identifier = description.identifier().unwrap_or_default().to_string();
                match parse_properties(&identifier, description.properties()) {
                    Ok(properties) => listed.push(Listed {
                        item: self.item(region, spec, identifier, properties),
                        unreadable: None,
                    }),
                    // GetResource replaces the listed properties anyway: it decides.
                    Err(failure) if spec.use_get_resource_api => listed.push(Listed {
                        item: self.item(region, spec, identifier, Json::Null),
                        unreadable: Some(failure),
                    }),
                    Err(failure) => unreadable.add(failure),
                }
            }
            let items = if spec.use_get_resource_api && !listed.is_empty() {
                self.get_each(region, &spec.kind, &bucket, listed, &mut unreadable)
                    .await?
            } else {
                listed.into_iter().map(|l| l.item).collect()
            };
            *sent += items.len();
            if !items.is_empty() && out.send(items).await.is_err() {
                return Err(ScopeFailure::new(
                    "Cancelled",
                    "the run stopped before this listing finished",
                ));
            }
            next_token = match pages.follow(page.next_token()) {
                Ok(Some(token)) => Some(token),
                Ok(None) => {
                    if let Some(cut) = truncated(&spec.kind, count) {
                        tracing::warn!(account = %self.account, %region, kind = %spec.kind, "{}", cut.message);
                        return Err(cut);
                    }
                    return unreadable.into_result();
                }
                Err(e) => return Err(ScopeFailure::new(e.code(), format!("Cloud Control {e}"))),
            };
        }
    }

    fn item(&self, region: &str, spec: &KindSpec, identifier: String, properties: Json) -> RawItem {
        RawItem {
            account: self.account.clone(),
            account_name: self.account_name.clone(),
            region: region.to_string(),
            kind: spec.kind.clone(),
            identifier,
            model: spec.model(),
            properties,
        }
    }

    /// Replaces each item's properties with the full model from `GetResource`, a few at a time.
    async fn get_each(
        self: &Arc<Self>,
        region: &str,
        kind: &str,
        bucket: &Arc<TokenBucket>,
        items: Vec<Listed>,
        unreadable: &mut Unreadable,
    ) -> Result<Vec<RawItem>, ScopeFailure> {
        let mut full: Vec<Option<RawItem>> = vec![None; items.len()];
        let mut pending = items.into_iter().enumerate();
        let mut running = JoinSet::new();
        loop {
            while running.len() < GET_RESOURCE_FAN_OUT {
                let Some((index, Listed { item, unreadable })) = pending.next() else {
                    break;
                };
                let this = Arc::clone(self);
                let bucket = Arc::clone(bucket);
                let region = region.to_string();
                let kind = kind.to_string();
                running.spawn(async move {
                    let (got, own_region) = match this
                        .read_item(&bucket, &region, &kind, &item.identifier)
                        .await
                    {
                        Ok(Read::Found { properties, region }) => (properties, region),
                        // Deleted between the list and the get: it is gone, which is no failure.
                        Ok(Read::Gone) => return Ok::<_, ScopeFailure>((index, None)),
                        // Not readable where it could be read: the item is skipped and its
                        // scope fails, like an item whose Properties cannot be parsed.
                        Err(f) if f.code == UNREADABLE => return Ok((index, Some(Err(f)))),
                        Err(f) => return Err(f),
                    };
                    // Without Properties from GetResource, the listed ones stand, if they could be
                    // read; an item with neither has nothing true to map.
                    let properties = match (got.as_deref(), unreadable) {
                        (Some(text), _) => parse_properties(&item.identifier, Some(text)),
                        (None, None) => Ok(item.properties.clone()),
                        (None, Some(listed)) => Err(ScopeFailure::new(
                            listed.code,
                            format!(
                                "{}; GetResource returned no Properties either",
                                listed.message
                            ),
                        )),
                    };
                    Ok((
                        index,
                        Some(properties.map(|properties| RawItem {
                            properties,
                            region: own_region,
                            ..item
                        })),
                    ))
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (index, item) = joined.map_err(|e| {
                ScopeFailure::new("Internal", format!("GetResource task failed: {e}"))
            })??;
            match item {
                Some(Ok(item)) => full[index] = Some(item),
                Some(Err(failure)) => unreadable.add(failure),
                None => {}
            }
        }
        Ok(full.into_iter().flatten().collect())
    }
}

/// What `GetResource` says about a listed item.
enum Read {
    /// Its `Properties` (when there were any), read in `region`: the item's own.
    Found {
        properties: Option<String>,
        region: String,
    },
    /// Not found where it lives: deleted since the listing.
    Gone,
}

/// The code of a listed item that no region would read: it fails its scope without ending it.
const UNREADABLE: &str = "Unreadable";

impl AccountLister {
    /// Reads a listed item's full model where it can be read. A regional type's items live
    /// where they were listed, so a not-found there is proof they are gone; S3 lists every
    /// bucket from one region and reads each only in its own, which must be found first.
    async fn read_item(
        &self,
        bucket: &TokenBucket,
        listed_in: &str,
        kind: &str,
        identifier: &str,
    ) -> Result<Read, ScopeFailure> {
        if kind == S3_BUCKET {
            return self.read_bucket(listed_in, identifier).await;
        }
        match self.get_resource(bucket, listed_in, kind, identifier).await {
            Ok(properties) => Ok(Read::Found {
                properties,
                region: listed_in.to_string(),
            }),
            Err(f) if f.code == NOT_FOUND => Ok(Read::Gone),
            Err(f) => Err(f),
        }
    }

    /// Reads a bucket in the first region that has it: where it was found before, where it was
    /// listed, then the account's regions, standard before opt-in (GetResource answers
    /// not-found across an opt-in region). Not found in every enabled region, it is gone; any
    /// other answer leaves it unproven, so it is unreadable and its scope fails.
    async fn read_bucket(&self, listed_in: &str, name: &str) -> Result<Read, ScopeFailure> {
        let known = self.bucket_regions.get(&self.account, name);
        let order = regions::bucket_order(known.as_deref(), listed_in, &self.regions);
        let mut not_found = Vec::new();
        let mut refused: Vec<(String, ScopeFailure)> = Vec::new();
        for region in order {
            let bucket = self.bucket(&region);
            match self.get_resource(&bucket, &region, S3_BUCKET, name).await {
                Ok(properties) => {
                    // A standard region may serve another's bucket; RegionalDomainName says
                    // where it lives.
                    let own = properties
                        .as_deref()
                        .and_then(|text| bucket_region(name, text))
                        .unwrap_or(region);
                    self.bucket_regions.remember(&self.account, name, &own);
                    return Ok(Read::Found {
                        properties,
                        region: own,
                    });
                }
                Err(f) if f.code == NOT_FOUND => not_found.push(region),
                Err(f) => refused.push((region, f)),
            }
        }
        self.bucket_regions.forget(&self.account, name);
        if refused.is_empty() && self.regions_are_enabled {
            return Ok(Read::Gone);
        }
        let mut said: Vec<String> = refused
            .iter()
            .map(|(region, failure)| format!("{region}: {failure}"))
            .collect();
        if !not_found.is_empty() {
            said.push(format!("{NOT_FOUND} in {}", not_found.join(", ")));
        }
        let why = if refused.is_empty() {
            "it may live in a region not in source.regions (regions: enabled asks them all)"
        } else {
            "it is not proven gone"
        };
        Err(ScopeFailure::new(
            UNREADABLE,
            format!(
                "bucket {name:?} was listed but no region would read it ({}); {why}",
                said.join("; ")
            ),
        ))
    }

    /// One `GetResource` in `region`: the description's `Properties`, if it had any.
    async fn get_resource(
        &self,
        bucket: &TokenBucket,
        region: &str,
        kind: &str,
        identifier: &str,
    ) -> Result<Option<String>, ScopeFailure> {
        let described = self
            .call(bucket, "GetResource", || {
                self.client
                    .get_resource()
                    .type_name(kind)
                    .identifier(identifier)
                    .customize()
                    .config_override(aws_sdk_cloudcontrol::config::Builder::default().region(
                        aws_sdk_cloudcontrol::config::Region::new(region.to_string()),
                    ))
                    .send()
            })
            .await?;
        Ok(described
            .resource_description()
            .and_then(|d| d.properties())
            .filter(|text| !text.is_empty())
            .map(str::to_string))
    }
}

/// The region in a bucket model's `RegionalDomainName` (`<bucket>.s3.<region>.amazonaws.com`;
/// the legacy `<bucket>.s3.amazonaws.com` is us-east-1), if it names one.
fn bucket_region(name: &str, properties: &str) -> Option<String> {
    let model: Json = serde_json::from_str(properties).ok()?;
    let domain = model.get("RegionalDomainName")?.as_str()?;
    let rest = domain.strip_prefix(name)?.strip_prefix(".s3.")?;
    let region = rest.split('.').next()?;
    match region {
        "amazonaws" => Some("us-east-1".to_string()),
        r if is_region_name(r) && r.contains('-') => Some(r.to_string()),
        _ => None,
    }
}

/// An item as `ListResources` gave it, on its way to `GetResource`; `unreadable` says why its
/// listed Properties could not be read.
struct Listed {
    item: RawItem,
    unreadable: Option<ScopeFailure>,
}

/// Items whose properties could not be read. They are skipped and the listing goes on, so that
/// the scope's other items still create and update; the scope then fails, naming the first.
#[derive(Debug, Default)]
struct Unreadable {
    first: Option<ScopeFailure>,
    count: usize,
}

impl Unreadable {
    fn add(&mut self, failure: ScopeFailure) {
        self.count += 1;
        self.first.get_or_insert(failure);
    }

    fn into_result(self) -> Result<(), ScopeFailure> {
        match self.first {
            None => Ok(()),
            Some(first) if self.count == 1 => Err(first),
            Some(first) => Err(ScopeFailure::new(
                first.code,
                format!(
                    "{} (and {} more unreadable items)",
                    first.message,
                    self.count - 1
                ),
            )),
        }
    }
}

/// Cloud Control returns `Properties` as a JSON string; anything else is an unreadable item,
/// skipped (a half-read item could map to wrong values) and named in its scope's failure.
pub(crate) fn parse_properties(
    identifier: &str,
    properties: Option<&str>,
) -> Result<Json, ScopeFailure> {
    let unreadable = |what: String| {
        ScopeFailure::new("InvalidProperties", format!("item {identifier:?}: {what}"))
    };
    let parsed = match properties {
        None | Some("") => return Ok(Json::Object(Default::default())),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            // serde_json stops at 128 levels rather than risk the stack; say so, since the
            // document itself may well be valid.
            let what = if e.to_string().starts_with("recursion limit exceeded") {
                "Properties nests too deeply to read"
            } else {
                "Properties is not valid JSON"
            };
            unreadable(format!("{what} ({e})"))
        })?,
    };
    if is_too_deep(&parsed) {
        return Err(unreadable(format!(
            "Properties nests more than {MAX_PROPERTIES_DEPTH} levels deep"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties_are_parsed_from_their_json_string() {
        assert_eq!(
            parse_properties("b", Some(r#"{"BucketName":"b","Tags":[]}"#)),
            Ok(json!({"BucketName": "b", "Tags": []}))
        );
        assert_eq!(parse_properties("b", None), Ok(json!({})));
    }

    #[test]
    fn invalid_properties_fail_with_the_item_named() {
        let err = parse_properties("my-bucket", Some("{not json")).expect_err("invalid JSON");
        assert_eq!(err.code, "InvalidProperties");
        assert!(err.message.contains("my-bucket"), "{}", err.message);
    }

    #[test]
    fn an_unexpected_answer_is_described_by_status_type_and_title_only() {
        let page =
            b"<HTML><TITLE>502 Bad Gateway\n</TITLE><body>X-Amz-Security-Token: secret</body>";
        let said = unexpected_answer(502, Some("text/html"), Some(page));
        assert_eq!(
            said,
            "Cloud Control answered HTTP 502 with a body that is not JSON (text/html): \"502 Bad Gateway\""
        );
        assert!(!said.contains("secret"));
        // No title, an unclosed one, bytes that are not UTF-8, a huge one: never a panic.
        for body in [
            &b"<title>unclosed"[..],
            &b"\xff\xfe<title>\xff</title>"[..],
            &b""[..],
        ] {
            let said = unexpected_answer(500, None, Some(body));
            assert!(
                said.starts_with("Cloud Control answered HTTP 500"),
                "{said}"
            );
        }
        let long = format!("<title>{}</title>", "é".repeat(1000));
        let said = unexpected_answer(
            200,
            Some("application/x-amz-json-1.0"),
            Some(long.as_bytes()),
        );
        assert!(
            said.contains("JSON that is not a Cloud Control answer"),
            "{said}"
        );
        assert!(said.chars().count() < 200, "{said}");
    }

    #[test]
    fn unreadable_items_fail_the_scope_naming_the_first_and_counting_the_rest() {
        let mut unreadable = Unreadable::default();
        assert_eq!(Unreadable::default().into_result(), Ok(()));
        unreadable.add(parse_properties("a", Some("{")).expect_err("invalid"));
        unreadable.add(parse_properties("b", Some("[")).expect_err("invalid"));
        let failure = unreadable.into_result().expect_err("failed");
        assert!(failure.message.contains("\"a\""), "{failure}");
        assert!(failure.message.contains("1 more"), "{failure}");
    }

    #[test]
    fn a_buckets_region_is_read_from_its_regional_domain_name() {
        let model = |domain: &str| json!({ "RegionalDomainName": domain }).to_string();
        assert_eq!(
            bucket_region("b", &model("b.s3.af-south-1.amazonaws.com")).as_deref(),
            Some("af-south-1")
        );
        assert_eq!(
            bucket_region("b", &model("b.s3.cn-north-1.amazonaws.com.cn")).as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            bucket_region("b", &model("b.s3.amazonaws.com")).as_deref(),
            Some("us-east-1")
        );
        for odd in [
            "other.s3.eu-west-1.amazonaws.com",
            "b.s3..amazonaws.com",
            "b.s3.EU.x",
        ] {
            assert_eq!(bucket_region("b", &model(odd)), None, "{odd}");
        }
        assert_eq!(bucket_region("b", "{}"), None);
    }

    #[test]
    fn a_type_is_unavailable_when_cloud_control_or_its_downstream_service_says_so() {
        for (code, message, unavailable) in [
            (
                "TypeNotFoundException",
                "The type 'AWS::X::Y' cannot be found.",
                true,
            ),
            (
                "UnsupportedActionException",
                "Resource type AWS::IAM::Policy does not support LIST action",
                true,
            ),
            (
                "GeneralServiceException",
                "Resource type AWS::X::Y is not available in this region",
                true,
            ),
            (
                "GeneralServiceException",
                "Internal error reported from downstream service",
                false,
            ),
            ("AccessDeniedException", "not authorized", false),
        ] {
            assert_eq!(
                is_unavailable(&ScopeFailure::new(code, message)),
                unavailable,
                "{code}: {message}"
            );
        }
    }

    #[test]
    fn a_listing_of_exactly_a_known_cap_is_possibly_truncated() {
        let cut = truncated("AWS::SQS::Queue", 1000).expect("capped");
        assert_eq!(cut.code, "PossiblyTruncated");
        assert!(cut.message.contains("1000") && cut.message.contains("ocean#1453"));
        assert_eq!(truncated("AWS::SQS::Queue", 999), None);
        assert_eq!(truncated("AWS::SNS::Topic", 1000), None);
    }

    #[test]
    fn type_failures_are_remembered_per_region_and_kind() {
        let remembered = Remembered::default();
        let f = ScopeFailure::new("TypeNotFoundException", "no such type");
        assert!(remembered.remember("us-east-1", "AWS::X::Y", &f));
        assert!(!remembered.remember("us-east-1", "AWS::X::Y", &f));
        assert_eq!(remembered.get("us-east-1", "AWS::X::Y"), Some(f));
        assert_eq!(remembered.get("eu-west-1", "AWS::X::Y"), None);
    }
}
