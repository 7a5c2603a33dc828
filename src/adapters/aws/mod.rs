//! The AWS source: base credentials, account discovery, member role assumption, regions and
//! Cloud Control listing, streamed page by page into the mapping.
//!
//! One run: discover accounts (every run: accounts come and go) → for at most
//! `concurrency.accounts` accounts at once: assume its role → its regions → every (region, kind)
//! listing, paced by a token bucket per (account, region). Nothing that goes wrong for one account
//! or listing stops the run; it is reported in [`SourceReport`] so that the reconciler withholds
//! the deletes it cannot prove.

mod credentials;
mod discovery;
mod listing;
mod pages;
mod throttle;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::adapters::requests::{Outcome, RequestCount, RequestCounter};
use crate::adapters::{ItemSink, Source, SourceError};
use crate::core::derive::{self, Derivations, DerivedModels};
use crate::core::model::{KindSpec, RawItem, is_global_kind};
use crate::core::report::{
    AccountReport, Discovery, DiscoveryStatus, ListRequest, Listing, Regions, SourceReport,
    is_account_id, misspelt_region, not_an_account_id,
};
use crate::core::secret::Secret;

use crate::core::regions;
use crate::core::shard::{self, Shard};
pub use credentials::AssumeFailure;
use credentials::{AssumeMethod, RoleCredentials, STS, SharedRole, session_name};
use discovery::{OrgsFailure, Target, parse_role_arn};
use listing::{AccountLister, BucketRegions, Remembered, ScopeFailure, is_unavailable, outcome_of};
use pages::Pages;

/// How member accounts are entered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberAuth {
    /// `webIdentity` when the base credentials are web identity, else `assumeRole`.
    #[default]
    Auto,
    AssumeRole,
    WebIdentity,
}

/// `source:` of a `type: aws` config, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsConfig {
    /// Organizations mode: the role in the management or delegated-admin account.
    pub account_role_arn: Option<String>,
    /// Explicit list mode: exactly these member roles.
    pub account_role_arns: Option<Vec<String>>,
    pub external_id: Option<Secret>,
    pub member_auth: MemberAuth,
    pub organizational_units: Vec<String>,
    pub exclude: Vec<String>,
    pub regions: Regions,
    /// At most this many accounts are listed at once.
    pub concurrency_accounts: usize,
    /// Token bucket rate per (account, region).
    pub requests_per_second: f64,
}

/// Pages received and not yet mapped, at least: the bound on what listing holds in memory.
const MIN_PAGES_WAITING: usize = 64;
/// (region, kind) listings of one account in flight at once; the token bucket paces their requests.
const SCOPES_IN_FLIGHT_PER_ACCOUNT: usize = 32;

/// How many pages may wait, received and not yet mapped, before listings pause: one for every
/// listing the config lets run at once (accounts × scopes per account), so that no listing waits
/// on the bound while mapping keeps up (a fixed 64 held 5 accounts' 75 listings back), and never
/// more, so memory stays bounded by the config, not by the number of accounts.
fn pages_waiting(config: &AwsConfig) -> usize {
    config
        .concurrency_accounts
        .clamp(1, 1000)
        .saturating_mul(SCOPES_IN_FLIGHT_PER_ACCOUNT)
        .max(MIN_PAGES_WAITING)
}

/// Failures that stop a run before any account is reached (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), `region` in the AWS profile, or list source.regions"
    )]
    NoRegion,
    #[error(
        "no usable AWS credentials: {message}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (IRSA)"
    )]
    NoCredentials { message: String },
    #[error(
        "memberAuth: webIdentity needs a web identity token: set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN"
    )]
    NoWebIdentityToken,
    #[error(
        "source.accounts: {value:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
    )]
    BadRoleArn { value: String },
    #[error("the listing task stopped unexpectedly: {0}")]
    Internal(String),
}

/// Why the base credentials could not be loaded, in one line. The SDK's own report lists every
/// provider of its chain with debug structures; what a user needs is which case it is.
fn credentials_problem(e: &aws_credential_types::provider::error::CredentialsError) -> String {
    use aws_credential_types::provider::error::CredentialsError;
    match e {
        CredentialsError::CredentialsNotLoaded(_) => "no credential source had any (environment variables, AWS profile, web identity token, container, instance metadata)".to_string(),
        CredentialsError::ProviderTimedOut(_) => {
            "the credential provider timed out (is the instance metadata service reachable?)"
                .to_string()
        }
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        }
    }
}

impl From<AwsError> for SourceError {
    fn from(err: AwsError) -> SourceError {
        SourceError::Aws(err.to_string())
    }
}

/// Per-service endpoint overrides, beside what `AWS_ENDPOINT_URL(_<SERVICE>)` already gives the
/// SDK config. Tests use them to put each service on its own local stand-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    pub sts: Option<String>,
    pub organizations: Option<String>,
    pub cloudcontrol: Option<String>,
    pub account: Option<String>,
}

/// Base credentials that are a web identity (IRSA): the token file and the role it enters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebIdentityBase {
    pub token_file: PathBuf,
    pub role_arn: String,
}

/// Where the AWS source starts from: an SDK config (region, base credentials, endpoints),
/// and whether the base identity is a web identity.
#[derive(Clone, Debug)]
pub struct BaseAws {
    pub sdk_config: SdkConfig,
    /// When set, the base credentials come from `AssumeRoleWithWebIdentity` with this token file
    /// (called through tidemark's own STS client, so endpoint overrides apply), replacing those of
    /// `sdk_config`, and `memberAuth: auto` means web identity.
    pub web_identity: Option<WebIdentityBase>,
    pub endpoints: ServiceEndpoints,
}

impl BaseAws {
    /// The SDK's default chain and region, with web identity detected from the environment
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, unless static keys come first in the chain).
    pub async fn from_env() -> BaseAws {
        BaseAws::from_env_or_region(None).await
    }

    /// Like [`from_env`](BaseAws::from_env), with `fallback` as the SDK's home region when
    /// neither the environment nor the profile names one (the first of `source.regions`).
    pub async fn from_env_or_region(fallback: Option<&str>) -> BaseAws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = fallback {
            let chain = aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(aws_config::Region::new(region.to_string()));
            loader = loader.region(chain);
        }
        let sdk_config = loader.load().await;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let web_identity = match (
            var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            var("AWS_ROLE_ARN"),
            var("AWS_ACCESS_KEY_ID"),
        ) {
            (Some(token_file), Some(role_arn), None) => Some(WebIdentityBase {
                token_file: PathBuf::from(token_file),
                role_arn,
            }),
            _ => None,
        };
        BaseAws {
            sdk_config,
            web_identity,
            endpoints: ServiceEndpoints::default(),
        }
    }
}

/// Lists Cloud Control resources across the configured accounts.
#[derive(Clone)]
pub struct AwsSource {
    inner: Arc<Inner>,
}

impl fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // AwsConfig's Debug already masks the ExternalId; credentials are never reachable from here.
        f.debug_struct("AwsSource")
            .field("config", &self.inner.config)
            .field("member_auth", &self.inner.member_method)
            .finish_non_exhaustive()
    }
}

/// One account's clients, built on first use and kept for later runs (watch mode).
struct AccountClients {
    role: Option<Arc<RoleCredentials>>,
    cloudcontrol: aws_sdk_cloudcontrol::Client,
    account: aws_sdk_account::Client,
}

struct Inner {
    config: AwsConfig,
    sdk: SdkConfig,
    endpoints: ServiceEndpoints,
    /// Signs `AssumeRole` with the base credentials; `AssumeRoleWithWebIdentity` is unsigned.
    sts: aws_sdk_sts::Client,
    base_credentials: SharedCredentialsProvider,
    member_method: AssumeMethod,
    /// Keyed by role ARN (`""`: the base account), so credentials outlive one run.
    accounts: Mutex<HashMap<String, Arc<AccountClients>>>,
    /// Every request to AWS that tidemark sends itself, for the daemon's metrics.
    requests: Arc<RequestCounter>,
    /// Where each S3 bucket was last read, so later runs read it there first.
    bucket_regions: Arc<BucketRegions>,
    /// Only this shard's accounts are assumed and listed; the others are not gone, just not ours.
    shard: Option<Shard>,
}

/// Everything one account yields besides its items.
struct AccountOutcome {
    report: AccountReport,
    listings: Vec<Listing>,
}

impl AwsSource {
    /// The source with base credentials from the SDK's default chain and the usual region
    /// sources, then the first configured region.
    pub async fn new(config: AwsConfig) -> Result<AwsSource, SourceError> {
        let fallback = match &config.regions {
            Regions::List(regions) => regions.first().map(String::as_str),
            Regions::Enabled => None,
        };
        let base = BaseAws::from_env_or_region(fallback).await;
        AwsSource::with_base(config, base).await
    }

    /// The source from an explicit starting point (tests, or embedding with a custom SDK config).
    pub async fn with_base(config: AwsConfig, base: BaseAws) -> Result<AwsSource, SourceError> {
        if base.sdk_config.region().is_none() {
            return Err(AwsError::NoRegion.into());
        }
        for arn in config
            .account_role_arn
            .iter()
            .chain(config.account_role_arns.iter().flatten())
        {
            if parse_role_arn(arn).is_none() {
                return Err(AwsError::BadRoleArn { value: arn.clone() }.into());
            }
        }
        let base = BaseAws {
            sdk_config: sharing_one_http_client(base.sdk_config),
            ..base
        };
        let endpoints = base.endpoints.clone();
        let unsigned_sts = sts_client(&base.sdk_config, &endpoints, None);
        let requests = Arc::new(RequestCounter::new());
        let base_credentials =
            match &base.web_identity {
                Some(web) => {
                    SharedCredentialsProvider::new(SharedRole(Arc::new(RoleCredentials::new(
                        unsigned_sts,
                        web.role_arn.clone(),
                        "tidemark".to_string(),
                        AssumeMethod::WebIdentity {
                            token_file: web.token_file.clone(),
                        },
                        Arc::clone(&requests),
                    ))))
                }
                None => base.sdk_config.credentials_provider().ok_or_else(|| {
                    AwsError::NoCredentials {
                        message: "no credentials provider is configured".into(),
                    }
                })?,
            };
        base_credentials
            .provide_credentials()
            .await
            .map_err(|e| AwsError::NoCredentials {
                message: credentials_problem(&e),
            })?;
        let member_method = match (config.member_auth, &base.web_identity) {
            (MemberAuth::WebIdentity | MemberAuth::Auto, Some(web)) => AssumeMethod::WebIdentity {
                token_file: web.token_file.clone(),
            },
            (MemberAuth::WebIdentity, None) => return Err(AwsError::NoWebIdentityToken.into()),
            (MemberAuth::AssumeRole | MemberAuth::Auto, _) => AssumeMethod::AssumeRole {
                external_id: config.external_id.clone(),
            },
        };
        let sts = sts_client(&base.sdk_config, &endpoints, Some(base_credentials.clone()));
        Ok(AwsSource {
            inner: Arc::new(Inner {
                config,
                sdk: base.sdk_config,
                endpoints,
                sts,
                base_credentials,
                member_method,
                accounts: Mutex::new(HashMap::new()),
                requests,
                bucket_regions: Arc::new(BucketRegions::default()),
                shard: None,
            }),
        })
    }

    /// The source assuming and listing only the accounts that `shard` owns (none: every
    /// account). Discovery still reads the whole organisation: it is one cheap paged call, and
    /// only a complete discovery lets a shard prove one of its own accounts gone.
    pub fn with_shard(mut self, shard: Option<Shard>) -> AwsSource {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shard = shard;
        }
        self
    }

    /// What `tidemark accounts` shows: discovery, then per account whether its role could be
    /// assumed (with the advice to try) and its regions. Lists no resources.
    pub async fn accounts(&self) -> Result<(Discovery, Vec<AccountReport>), SourceError> {
        let (discovery, targets) = self.inner.discover().await;
        let regions = self.inner.config.regions.clone();
        let outcomes = self
            .inner
            .clone()
            .for_each_account(targets, move |inner, target| {
                let regions = regions.clone();
                async move { inner.enter_account(&target, &regions).await.0 }
            })
            .await?;
        Ok((discovery, outcomes))
    }
}

/// `sdk` with one HTTP client for all the clients built from it, unless it names its own. Left
/// to itself, every SDK client creates its own HTTP client, and with it its own TLS setup
/// (reading and parsing the system's root certificates) and its own connections: twice per
/// account. One client is what the SDK's default would be (rustls with aws-lc, the proxy from
/// the environment), shared.
fn sharing_one_http_client(sdk: SdkConfig) -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
    if sdk.http_client().is_some() {
        return sdk;
    }
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    sdk.into_builder().http_client(client).build()
}

fn sts_client(
    sdk: &SdkConfig,
    endpoints: &ServiceEndpoints,
    credentials: Option<SharedCredentialsProvider>,
) -> aws_sdk_sts::Client {
    let mut builder = aws_sdk_sts::config::Builder::from(sdk);
    if let Some(url) = &endpoints.sts {
        builder = builder.endpoint_url(url);
    }
    if let Some(credentials) = credentials {
        builder = builder.credentials_provider(credentials);
    }
    aws_sdk_sts::Client::from_conf(builder.build())
}

/// The fix to try for a role that cannot be assumed, from Port's troubleshooting guide.
fn assume_advice(role_arn: &str, method: &AssumeMethod, failure: &AssumeFailure) -> String {
    let how = match method {
        AssumeMethod::AssumeRole { external_id } => format!(
            "check that the role ARN is right and the role exists; that its trust policy allows the base identity to call sts:AssumeRole; {}; and that the base identity has the sts:AssumeRole permission on this role",
            if external_id.is_some() {
                "that the configured externalId matches the trust policy's sts:ExternalId condition"
            } else {
                "that the trust policy does not require an sts:ExternalId (none is configured)"
            }
        ),
        AssumeMethod::WebIdentity { .. } => "check that the role ARN is right and the role exists; that the account has an OIDC provider for the cluster's issuer and the role's trust policy allows it (sts:AssumeRoleWithWebIdentity, with the service account's sub and aud); and that the base identity has the sts:AssumeRoleWithWebIdentity permission".to_string(),
    };
    format!("cannot assume {role_arn}: {failure}. To fix: {how}")
}

impl Inner {
    fn role(&self, role_arn: &str, account: &str) -> Arc<RoleCredentials> {
        Arc::new(RoleCredentials::new(
            self.sts.clone(),
            role_arn.to_string(),
            session_name(account),
            self.member_method.clone(),
            Arc::clone(&self.requests),
        ))
    }

    /// The clients of the account entered with `role_arn` (`None`: base credentials), built once.
    fn clients(&self, role_arn: Option<&str>, account: &str) -> Arc<AccountClients> {
        let key = role_arn.unwrap_or_default().to_string();
        if let Ok(cache) = self.accounts.lock()
            && let Some(clients) = cache.get(&key)
        {
            return Arc::clone(clients);
        }
        let role = role_arn.map(|arn| self.role(arn, account));
        let clients = Arc::new(self.build_clients(role));
        if let Ok(mut cache) = self.accounts.lock() {
            // Another task may have raced us here; keep the first so that all share one cache.
            return Arc::clone(cache.entry(key).or_insert(clients));
        }
        clients
    }

    fn build_clients(&self, role: Option<Arc<RoleCredentials>>) -> AccountClients {
        use aws_sdk_cloudcontrol::config::IdentityCache;
        let credentials = match &role {
            Some(role) => SharedCredentialsProvider::new(SharedRole(Arc::clone(role))),
            None => self.base_credentials.clone(),
        };
        let mut cc = aws_sdk_cloudcontrol::config::Builder::from(&self.sdk)
            .credentials_provider(credentials.clone())
            // Retries are ours: each attempt must take a token from the bucket, and the error
            // classes that fail a scope are the contract's, not the SDK's.
            .retry_config(aws_sdk_cloudcontrol::config::retry::RetryConfig::disabled());
        let mut acct =
            aws_sdk_account::config::Builder::from(&self.sdk).credentials_provider(credentials);
        if role.is_some() {
            // The role caches and refreshes its own credentials with the contract's margin; a second
            // cache in front of it would hand out credentials it already decided to renew.
            cc = cc.identity_cache(IdentityCache::no_cache());
            acct = acct.identity_cache(aws_sdk_account::config::IdentityCache::no_cache());
        }
        if let Some(url) = &self.endpoints.cloudcontrol {
            cc = cc.endpoint_url(url);
        }
        if let Some(url) = &self.endpoints.account {
            acct = acct.endpoint_url(url);
        }
        AccountClients {
            role,
            cloudcontrol: aws_sdk_cloudcontrol::Client::from_conf(cc.build()),
            account: aws_sdk_account::Client::from_conf(acct.build()),
        }
    }

    /// The base credentials' own account.
    async fn base_account(&self) -> Result<String, String> {
        let sent = self.sts.get_caller_identity().send().await;
        self.requests.attempt(
            STS,
            "GetCallerIdentity",
            match &sent {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
        );
        let me = sent.map_err(|e| match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
            None => DisplayErrorContext(&e).to_string(),
        })?;
        me.account()
            .map(str::to_string)
            .ok_or_else(|| "sts:GetCallerIdentity returned no account".to_string())
    }

    /// The accounts to sync this run and how discovery went.
    async fn discover(&self) -> (Discovery, Vec<Target>) {
        let exclude = &self.config.exclude;
        let (discovery, targets) = self.discover_unfiltered().await;
        let targets = targets
            .into_iter()
            .filter(|t| !exclude.contains(&t.id) && shard::owns(self.shard.as_ref(), &t.id))
            .collect();
        (discovery, targets)
    }

    async fn discover_unfiltered(&self) -> (Discovery, Vec<Target>) {
        if let Some(arns) = &self.config.account_role_arns {
            let mut targets: Vec<Target> = Vec::new();
            for arn in arns {
                let id = parse_role_arn(arn)
                    .map(|r| r.account.to_string())
                    .unwrap_or_else(|| arn.clone());
                if !targets.iter().any(|t| t.id == id) {
                    targets.push(Target::bare(id, Some(arn.clone())));
                }
            }
            return (Discovery::ok(), targets);
        }
        let Some(org_arn) = &self.config.account_role_arn else {
            return match self.base_account().await {
                Ok(id) => (Discovery::ok(), vec![Target::bare(id, None)]),
                Err(e) => (
                    failed_discovery(format!("cannot identify the base account: {e}")),
                    Vec::new(),
                ),
            };
        };
        let Some(org_role) = parse_role_arn(org_arn) else {
            return (
                failed_discovery(format!("{org_arn:?} is not an IAM role ARN")),
                Vec::new(),
            );
        };
        let management = org_role.account.to_string();
        let clients = self.clients(Some(org_arn), &management);
        let Some(role) = &clients.role else {
            return (failed_discovery("internal: no role".into()), Vec::new());
        };
        if let Err(failure) = role.credentials().await {
            // The management account stays in the list, so that its report carries the advice.
            let error = assume_advice(org_arn, &self.member_method, &failure);
            tracing::warn!(role_arn = %org_arn, "account discovery failed: {error}");
            return (
                failed_discovery(error),
                vec![Target::bare(management, Some(org_arn.clone()))],
            );
        }
        let orgs = {
            let mut b = aws_sdk_organizations::config::Builder::from(&self.sdk)
                .credentials_provider(SharedCredentialsProvider::new(SharedRole(Arc::clone(role))))
                .identity_cache(aws_sdk_organizations::config::IdentityCache::no_cache());
            if let Some(url) = &self.endpoints.organizations {
                b = b.endpoint_url(url);
            }
            aws_sdk_organizations::Client::from_conf(b.build())
        };
        let listed = discovery::list_organization(
            &orgs,
            &org_role,
            &self.config.organizational_units,
            &self.requests,
        )
        .await;
        match listed {
            Ok(targets) => (Discovery::ok(), targets),
            Err(OrgsFailure::Fallback(error)) => {
                tracing::warn!(
                    "AWS Organizations answered {error}; falling back to the base account alone (no account counts as gone this run)"
                );
                let discovery = Discovery {
                    status: DiscoveryStatus::Fallback,
                    error: Some(format!(
                        "Organizations: {error}; synced the base account only. Check that {org_arn} is in the management or a delegated administrator account and that Organizations is enabled"
                    )),
                };
                match self.base_account().await {
                    Ok(id) => (discovery, vec![Target::bare(id, None)]),
                    Err(e) => (
                        failed_discovery(format!(
                            "Organizations: {error}; and the base account cannot be identified: {e}"
                        )),
                        Vec::new(),
                    ),
                }
            }
            Err(OrgsFailure::Failed(error)) => {
                tracing::warn!("account discovery failed: {error}");
                (
                    failed_discovery(format!("Organizations: {error}")),
                    Vec::new(),
                )
            }
        }
    }

    /// Runs `work` for each target, at most `concurrency.accounts` at once, in target order.
    async fn for_each_account<T, F, Fut>(
        self: Arc<Self>,
        targets: Vec<Target>,
        work: F,
    ) -> Result<Vec<T>, SourceError>
    where
        T: Send + 'static,
        F: Fn(Arc<Inner>, Target) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        // Clamped, not trusted: tokio panics above MAX_PERMITS (the config allows at most 1000).
        let permits = Arc::new(Semaphore::new(
            self.config
                .concurrency_accounts
                .clamp(1, Semaphore::MAX_PERMITS),
        ));
        let mut running = JoinSet::new();
        for (index, target) in targets.into_iter().enumerate() {
            let permits = Arc::clone(&permits);
            // One span per account, so every log line of its work carries the account id.
            let span = tracing::info_span!("account", id = %target.id);
            let job = work(Arc::clone(&self), target);
            running.spawn(
                async move {
                    let _permit = permits.acquire_owned().await;
                    (index, job.await)
                }
                .instrument(span),
            );
        }
        let mut results = Vec::new();
        while let Some(joined) = running.join_next().await {
            results.push(joined.map_err(|e| AwsError::Internal(e.to_string()))?);
        }
        results.sort_by_key(|(index, _)| *index);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    /// Assumes the account's role and looks up its regions. Returns the report and, when the
    /// account is usable, its lister and regions.
    async fn enter_account(
        &self,
        target: &Target,
        regions: &Regions,
    ) -> (AccountReport, Option<(Arc<AccountClients>, Vec<String>)>) {
        let mut report = AccountReport {
            id: target.id.clone(),
            name: target.name.clone(),
            email: target.email.clone(),
            status: target.status.clone(),
            arn: target.arn.clone(),
            role_arn: target.role_arn.clone(),
            ..AccountReport::default()
        };
        // Before any call made on its behalf: the id names its files in a snapshot.
        if !is_account_id(&target.id) {
            let error = not_an_account_id(&target.id);
            tracing::warn!(account = %target.id, "{error}");
            report.error = Some(error);
            return (report, None);
        }
        let clients = self.clients(target.role_arn.as_deref(), &target.id);
        if let (Some(role), Some(role_arn)) = (&clients.role, &target.role_arn)
            && let Err(failure) = role.credentials().await
        {
            let error = assume_advice(role_arn, &self.member_method, &failure);
            tracing::warn!(account = %target.id, "account unassumable: {error}");
            report.error = Some(error);
            return (report, None);
        }
        report.assumed = true;
        let regions = match regions {
            Regions::List(list) => Ok(list.clone()),
            Regions::Enabled => enabled_regions(&clients.account, &self.requests).await,
        }
        .and_then(|regions| misspelt_region(&regions).map_or(Ok(regions), Err));
        match regions {
            Ok(regions) => {
                report.regions = regions.clone();
                (report, Some((clients, regions)))
            }
            Err(error) => {
                tracing::warn!(account = %target.id, "cannot list the account's regions: {error}");
                report.regions_error = Some(error);
                (report, None)
            }
        }
    }

    /// One account: enter it, then list every (region, kind) it needs.
    async fn sync_account(
        self: Arc<Self>,
        target: Target,
        request: Arc<ListRequest>,
        derivations: Arc<Derivations>,
        remembered: Arc<Remembered>,
        out: mpsc::Sender<Vec<RawItem>>,
    ) -> AccountOutcome {
        let (report, usable) = self.enter_account(&target, &request.regions).await;
        let Some((clients, regions)) = usable else {
            return AccountOutcome {
                report,
                listings: Vec::new(),
            };
        };
        let lister = Arc::new(AccountLister {
            account: target.id.clone(),
            // Explicit list and single-account modes know no name: the id stands in (docs/contract.md).
            account_name: Some(target.name.clone().unwrap_or_else(|| target.id.clone())),
            regions: regions.clone(),
            regions_are_enabled: request.regions == Regions::Enabled,
            bucket_regions: Arc::clone(&self.bucket_regions),
            client: clients.cloudcontrol.clone(),
            role: clients.role.clone(),
            requests_per_second: self.config.requests_per_second,
            buckets: Mutex::new(HashMap::new()),
            requests: Arc::clone(&self.requests),
        });
        // Phase by phase, so that a kind listed from a parent's items (resourceModelsFrom) starts
        // once every listing of its parent in this account is complete.
        let permits = Arc::new(Semaphore::new(SCOPES_IN_FLIGHT_PER_ACCOUNT));
        let models = Arc::new(Mutex::new(DerivedModels::default()));
        let mut listings: Vec<Listing> = Vec::new();
        for phase in derive::phases(&request.kinds) {
            let specs: Vec<(usize, &KindSpec)> =
                phase.iter().map(|&i| (i, &request.kinds[i])).collect();
            let tasks = scopes_for(&regions, &specs);
            let (tap, observing) = observe_parents(
                Arc::clone(&request),
                Arc::clone(&derivations),
                Arc::clone(&models),
                out.clone(),
            );
            let before = Arc::new(listings.clone());
            let mut running = JoinSet::new();
            for task in tasks {
                let lister = Arc::clone(&lister);
                let remembered = Arc::clone(&remembered);
                let sink = if derivations.is_parent(task.kind()) {
                    tap.clone()
                } else {
                    out.clone()
                };
                let permits = Arc::clone(&permits);
                let models = Arc::clone(&models);
                let before = Arc::clone(&before);
                running.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    run_task(&lister, task, &remembered, &sink, &models, &before).await
                });
            }
            drop(tap);
            while let Some(joined) = running.join_next().await {
                match joined {
                    Ok(done) => listings.extend(done),
                    Err(e) => tracing::error!(account = %target.id, "a listing task failed: {e}"),
                }
            }
            // Every observed page is counted before the next phase derives from it.
            if let Err(e) = observing.await {
                tracing::error!(account = %target.id, "observing parent listings failed: {e}");
            }
        }
        for failed in listings
            .iter()
            .filter(|l| l.error.is_some() && !l.unavailable)
        {
            tracing::warn!(account = %failed.account, region = %failed.region, kind = %failed.kind, error = failed.error.as_deref().unwrap_or_default(), "listing failed");
        }
        AccountOutcome { report, listings }
    }

    async fn run(
        self: Arc<Self>,
        request: ListRequest,
        out: mpsc::Sender<Vec<RawItem>>,
    ) -> Result<SourceReport, SourceError> {
        let (discovery, targets) = self.discover().await;
        tracing::info!(accounts = targets.len(), status = ?discovery.status, "discovered accounts");
        let derivations = Arc::new(Derivations::compile(&request.kinds));
        let request = Arc::new(request);
        let remembered = Arc::new(Remembered::default());
        let outcomes = Arc::clone(&self)
            .for_each_account(targets, move |inner, target| {
                inner.sync_account(
                    target,
                    Arc::clone(&request),
                    Arc::clone(&derivations),
                    Arc::clone(&remembered),
                    out.clone(),
                )
            })
            .await?;
        let mut accounts = Vec::new();
        let mut listings = Vec::new();
        for outcome in outcomes {
            accounts.push(outcome.report);
            listings.extend(outcome.listings);
        }
        listings.sort();
        Ok(SourceReport {
            discovery,
            accounts,
            listings,
        })
    }
}

fn failed_discovery(error: String) -> Discovery {
    Discovery {
        status: DiscoveryStatus::Failed,
        error: Some(error),
    }
}

/// The account's enabled regions, every page (Ocean read only the first).
async fn enabled_regions(
    client: &aws_sdk_account::Client,
    requests: &RequestCounter,
) -> Result<Vec<String>, String> {
    use aws_sdk_account::types::RegionOptStatus;
    let mut regions = Vec::new();
    let mut next_token = None;
    let mut pages = Pages::new();
    loop {
        let sent = client
            .list_regions()
            .region_opt_status_contains(RegionOptStatus::Enabled)
            .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
            .set_next_token(next_token)
            .send()
            .await;
        // One count per SDK call: the account client keeps the SDK's own retries, which happen
        // inside it and are not visible here.
        requests.attempt(
            ACCOUNT,
            "ListRegions",
            match &sent {
                Ok(_) => Outcome::Ok,
                Err(e) => outcome_of(e),
            },
        );
        let page = sent.map_err(|e| match e.code() {
            Some(code) => format!(
                "account:ListRegions: {code}: {}",
                e.message().unwrap_or_default()
            ),
            None => format!("account:ListRegions: {}", DisplayErrorContext(&e)),
        })?;
        regions.extend(
            page.regions()
                .iter()
                .filter(|r| {
                    matches!(
                        r.region_opt_status(),
                        None | Some(RegionOptStatus::Enabled | RegionOptStatus::EnabledByDefault)
                    )
                })
                .filter_map(|r| r.region_name().map(str::to_string)),
        );
        next_token = pages
            .follow(page.next_token())
            .map_err(|e| format!("account:ListRegions: {}: {e}", e.code()))?;
        if next_token.is_none() {
            break;
        }
    }
    // Every account has regions enabled by default, so an answer without one is broken (a
    // proxy, a stand-in, a changed API). Taking it at its word would prove every resource of
    // the account gone; as a regions error it withholds the account's deletes.
    if regions.is_empty() {
        return Err("account:ListRegions returned no region that is enabled".into());
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// One listing an account needs.
#[derive(Clone, Debug, PartialEq)]
enum Task {
    /// A regional kind in one region.
    Regional { region: String, spec: KindSpec },
    /// A global kind, listed once from the first of these regions that serves it.
    Global { order: Vec<String>, spec: KindSpec },
    /// A kind listed once per item of its parent (`resourceModelsFrom`) in one region, or, for
    /// a global kind (`global`), once from the first region of `order` that serves it.
    Derived {
        index: usize,
        order: Vec<String>,
        global: bool,
        spec: KindSpec,
    },
}

impl Task {
    fn kind(&self) -> &str {
        match self {
            Task::Regional { spec, .. }
            | Task::Global { spec, .. }
            | Task::Derived { spec, .. } => &spec.kind,
        }
    }
}

/// The listings an account needs for `specs` (with their index in the request): each kind in
/// the regions its policy admits; global kinds once, from the partition's home region, else a
/// standard region, before any opt-in one ([`regions::global_order`]).
fn scopes_for(regions: &[String], specs: &[(usize, &KindSpec)]) -> Vec<Task> {
    let mut sorted: Vec<&String> = regions.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut tasks = Vec::new();
    for &(index, spec) in specs {
        let admitted: Vec<String> = sorted
            .iter()
            .filter(|r| spec.region_policy.admits(r))
            .map(|r| r.to_string())
            .collect();
        let global = is_global_kind(&spec.kind);
        if admitted.is_empty() {
            continue;
        }
        match (global, spec.models_from.is_some()) {
            (true, false) => tasks.push(Task::Global {
                order: regions::global_order(&admitted),
                spec: spec.clone(),
            }),
            (false, false) => tasks.extend(admitted.into_iter().map(|region| Task::Regional {
                region,
                spec: spec.clone(),
            })),
            (true, true) => tasks.push(Task::Derived {
                index,
                order: regions::global_order(&admitted),
                global,
                spec: spec.clone(),
            }),
            (false, true) => tasks.extend(admitted.into_iter().map(|region| Task::Derived {
                index,
                order: vec![region],
                global,
                spec: spec.clone(),
            })),
        }
    }
    tasks
}

/// A sender for the pages of parent kinds: each page's items give their children's models
/// before it goes on to `out`. The task ends when every sender is dropped.
fn observe_parents(
    request: Arc<ListRequest>,
    derivations: Arc<Derivations>,
    models: Arc<Mutex<DerivedModels>>,
    out: mpsc::Sender<Vec<RawItem>>,
) -> (mpsc::Sender<Vec<RawItem>>, tokio::task::JoinHandle<()>) {
    let (tap, mut pages) = mpsc::channel::<Vec<RawItem>>(out.max_capacity());
    let observing = tokio::spawn(async move {
        while let Some(page) = pages.recv().await {
            if let Ok(mut models) = models.lock() {
                models.observe(&request.kinds, &derivations, &page);
            }
            if out.send(page).await.is_err() {
                break;
            }
        }
    });
    (tap, observing)
}

/// Runs one listing task: the listings it made, each complete or failed.
async fn run_task(
    lister: &Arc<AccountLister>,
    task: Task,
    remembered: &Remembered,
    sink: &mpsc::Sender<Vec<RawItem>>,
    models: &Mutex<DerivedModels>,
    before: &[Listing],
) -> Vec<Listing> {
    let listing = |region: String, spec: &KindSpec, result: Result<(), ScopeFailure>| Listing {
        account: lister.account.clone(),
        region,
        kind: spec.kind.clone(),
        model: spec.model(),
        unavailable: result.as_ref().is_err_and(is_unavailable),
        error: result.err().map(|f| f.to_string()),
    };
    match task {
        Task::Regional { region, spec } => {
            let result = lister.list_scope(&region, &spec, remembered, sink).await;
            vec![listing(region, &spec, result)]
        }
        Task::Global { order, spec } => {
            let (region, result) = lister.list_global(&order, &spec, remembered, sink).await;
            vec![listing(region, &spec, result)]
        }
        Task::Derived {
            index,
            order,
            global,
            spec,
        } => {
            let first = order.first().cloned().unwrap_or_default();
            let region = (!global).then_some(first.as_str());
            let derived = derive::parents_complete(before, &spec, region).and_then(|()| {
                let models = models
                    .lock()
                    .map_err(|_| "the derived models were lost".to_string())?;
                Ok(models.models(index, region)?)
            });
            let models = match derived {
                Ok(models) => models,
                Err(problem) => {
                    return vec![derive::parent_failed(
                        &lister.account,
                        first,
                        &spec,
                        problem,
                    )];
                }
            };
            let mut done = Vec::with_capacity(models.len());
            // One parent's children per call, as the list handler takes them.
            for (_, model) in models {
                let child = derive::with_model(&spec, model);
                let (region, result) = if global {
                    lister.list_global(&order, &child, remembered, sink).await
                } else {
                    let result = lister.list_scope(&first, &child, remembered, sink).await;
                    (first.clone(), result)
                };
                done.push(listing(region, &child, result));
            }
            done
        }
    }
}

/// The `service` label of `account:ListRegions` requests in the metrics.
const ACCOUNT: &str = "account";

impl Source for AwsSource {
    fn take_requests(&self) -> Vec<RequestCount> {
        self.inner.requests.take()
    }

    async fn list(
        &self,
        request: &ListRequest,
        sink: &mut dyn ItemSink,
    ) -> Result<SourceReport, SourceError> {
        let (tx, mut rx) = mpsc::channel(pages_waiting(&self.inner.config));
        let run = tokio::spawn(Arc::clone(&self.inner).run(request.clone(), tx));
        while let Some(items) = rx.recv().await {
            sink.items(items);
        }
        run.await
            .map_err(|e| SourceError::from(AwsError::Internal(e.to_string())))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::RegionPolicy;

    fn spec(kind: &str, allow: &[&str], deny: &[&str]) -> KindSpec {
        KindSpec {
            kind: kind.into(),
            region_policy: RegionPolicy {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: deny.iter().map(|s| s.to_string()).collect(),
            },
            use_get_resource_api: false,
            resource_model: None,
            models_from: None,
        }
    }

    #[test]
    fn global_kinds_are_listed_once_from_the_home_region_first_among_the_admitted_ones() {
        let regions: Vec<String> = ["us-west-2", "af-south-1", "eu-west-1", "us-east-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let kinds = [
            spec("AWS::S3::Bucket", &[], &["us-east-1"]),
            spec(
                "AWS::EC2::Instance",
                &["us-west-2", "eu-west-1"],
                &["eu-west-1"],
            ),
            spec("AWS::IAM::Role", &[], &[]),
            spec("AWS::Route53::HostedZone", &["nowhere-1"], &[]),
        ];
        let strings = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let indexed: Vec<(usize, &KindSpec)> = kinds.iter().enumerate().collect();
        let scopes: Vec<(Vec<String>, String)> = scopes_for(&regions, &indexed)
            .into_iter()
            .map(|task| match task {
                Task::Regional { region, spec } => (vec![region], spec.kind),
                Task::Global { order, spec } | Task::Derived { order, spec, .. } => {
                    (order, spec.kind)
                }
            })
            .collect();
        assert_eq!(
            scopes,
            vec![
                (
                    strings(&["eu-west-1", "us-west-2", "af-south-1"]),
                    "AWS::S3::Bucket".to_string()
                ),
                (strings(&["us-west-2"]), "AWS::EC2::Instance".to_string()),
                (
                    strings(&["us-east-1", "eu-west-1", "us-west-2", "af-south-1"]),
                    "AWS::IAM::Role".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_advice_never_contains_the_external_id() {
        let method = AssumeMethod::AssumeRole {
            external_id: Some(Secret::new("very-secret-external-id")),
        };
        let failure = AssumeFailure {
            code: "AccessDenied".into(),
            message: "not authorized".into(),
        };
        let advice = assume_advice("arn:aws:iam::222222222222:role/R", &method, &failure);
        assert!(!advice.contains("very-secret"));
        assert!(advice.contains("AccessDenied: not authorized"));
        assert!(advice.contains("trust policy"));
        assert!(advice.contains("externalId"));
        assert!(advice.contains("sts:AssumeRole permission"));
    }
}
