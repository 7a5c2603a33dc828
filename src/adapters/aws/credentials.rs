//! Member-role credentials: `AssumeRole` (with ExternalId) or `AssumeRoleWithWebIdentity`, cached
//! per role and refreshed before they expire, so one sync may outlive the credentials it began with.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::sync::Semaphore;

use crate::adapters::requests::{Outcome, RequestCounter};
use crate::core::secret::Secret;

/// Credentials are refreshed this long before they expire at most: enough for a page in flight.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// ... and at most this share of their lifetime, so short-lived credentials are still used.
const REFRESH_MARGIN_SHARE: f64 = 0.2;

/// How a role is entered.
#[derive(Clone)]
pub(crate) enum AssumeMethod {
    AssumeRole {
        external_id: Option<Secret>,
    },
    /// The token file is re-read on every call: EKS rotates it under a running pod.
    WebIdentity {
        token_file: PathBuf,
    },
}

impl fmt::Debug for AssumeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The ExternalId is a shared secret between us and the role's owner: never printed.
            AssumeMethod::AssumeRole { external_id } => f
                .debug_struct("AssumeRole")
                .field("external_id", &external_id.as_ref().map(|_| "***"))
                .finish(),
            AssumeMethod::WebIdentity { token_file } => f
                .debug_struct("WebIdentity")
                .field("token_file", token_file)
                .finish(),
        }
    }
}

/// Why a role could not be assumed, as STS said it (code and message; never the request).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AssumeFailure {
    pub code: String,
    pub message: String,
}

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    /// When tidemark stops using them: expiry minus the refresh margin.
    refresh_at: SystemTime,
}

/// Credentials for one role, assumed on first use and again whenever they near expiry.
pub(crate) struct RoleCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    method: AssumeMethod,
    cached: Mutex<Option<Cached>>,
    /// One refresh at a time; callers that queue behind it find the fresh credentials cached.
    refreshing: Semaphore,
    /// The source's request counter.
    requests: Arc<RequestCounter>,
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// A session name that says who is reading, within STS's 2–64 characters of `[\w+=,.@-]`.
pub(crate) fn session_name(account: &str) -> String {
    let clean: String = account
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .collect();
    let mut name = format!("tidemark-{clean}");
    name.truncate(64);
    name
}

/// The smaller of 5 minutes and 20% of the credentials' lifetime.
pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    MAX_REFRESH_MARGIN.min(lifetime.mul_f64(REFRESH_MARGIN_SHARE))
}

impl RoleCredentials {
    pub(crate) fn new(
        sts: aws_sdk_sts::Client,
        role_arn: String,
        session_name: String,
        method: AssumeMethod,
        requests: Arc<RequestCounter>,
    ) -> RoleCredentials {
        RoleCredentials {
            sts,
            role_arn,
            session_name,
            method,
            cached: Mutex::new(None),
            refreshing: Semaphore::new(1),
            requests,
        }
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = self.cached.lock().ok()?;
        cached
            .as_ref()
            .filter(|c| SystemTime::now() < c.refresh_at)
            .map(|c| c.credentials.clone())
    }

    /// Forgets the cached credentials, e.g. after a service called them expired.
    pub(crate) fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.lock() {
            *cached = None;
        }
    }

    /// Cached credentials, or new ones from STS when there are none or they near expiry.
    pub(crate) async fn credentials(&self) -> Result<Credentials, AssumeFailure> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _permit = self.refreshing.acquire().await.map_err(|_| AssumeFailure {
            code: "Internal".into(),
            message: "credential refresh was shut down".into(),
        })?;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let received = SystemTime::now();
        let credentials = self.assume().await?;
        let refresh_at = match credentials.expiry() {
            Some(expiry) => {
                let lifetime = expiry.duration_since(received).unwrap_or_default();
                expiry - refresh_margin(lifetime)
            }
            // STS always gives an expiry; without one, keep them for the run.
            None => received + Duration::from_secs(365 * 24 * 3600),
        };
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(Cached {
                credentials: credentials.clone(),
                refresh_at,
            });
        }
        Ok(credentials)
    }

    async fn assume(&self) -> Result<Credentials, AssumeFailure> {
        let creds = match &self.method {
            AssumeMethod::AssumeRole { external_id } => {
                tracing::debug!(role_arn = %self.role_arn, session = %self.session_name, with_external_id = external_id.is_some(), "sts:AssumeRole");
                let sent = self
                    .sts
                    .assume_role()
                    .role_arn(&self.role_arn)
                    .role_session_name(&self.session_name)
                    .set_external_id(external_id.as_ref().map(|e| e.expose().to_string()))
                    .send()
                    .await;
                self.count("AssumeRole", &sent);
                sent.map_err(sts_failure)?.credentials
            }
            AssumeMethod::WebIdentity { token_file } => {
                tracing::debug!(role_arn = %self.role_arn, session = %self.session_name, token_file = %token_file.display(), "sts:AssumeRoleWithWebIdentity");
                let token =
                    tokio::fs::read_to_string(token_file)
                        .await
                        .map_err(|e| AssumeFailure {
                            code: "WebIdentityTokenUnreadable".into(),
                            message: format!("cannot read {}: {e}", token_file.display()),
                        })?;
                let sent = self
                    .sts
                    .assume_role_with_web_identity()
                    .role_arn(&self.role_arn)
                    .role_session_name(&self.session_name)
                    .web_identity_token(token.trim())
                    .send()
                    .await;
                self.count("AssumeRoleWithWebIdentity", &sent);
                sent.map_err(sts_failure)?.credentials
            }
        };
        let creds = creds.ok_or_else(|| AssumeFailure {
            code: "InvalidResponse".into(),
            message: "STS returned no credentials".into(),
        })?;
        let expiry = SystemTime::try_from(creds.expiration).ok();
        Ok(Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            expiry,
            "tidemark-assumed-role",
        ))
    }

    /// Counts one STS call. The SDK's own retries inside it (standard mode) are not visible here.
    fn count<T, E, R>(
        &self,
        operation: &'static str,
        sent: &Result<T, aws_sdk_sts::error::SdkError<E, R>>,
    ) where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let outcome = match sent {
            Ok(_) => Outcome::Ok,
            Err(e) if matches!(e.code(), Some("Throttling" | "ThrottlingException")) => {
                Outcome::Throttled
            }
            Err(_) => Outcome::Failed,
        };
        self.requests.attempt(STS, operation, outcome);
    }
}

/// The `service` label of STS requests in the metrics.
pub(crate) const STS: &str = "sts";

/// STS's error code and message; transport errors with their cause chain (which never holds
/// the request body, so never the ExternalId or token).
fn sts_failure<E, R>(err: aws_sdk_sts::error::SdkError<E, R>) -> AssumeFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match err.code() {
        Some(code) => AssumeFailure {
            code: code.to_string(),
            message: err.message().unwrap_or_default().to_string(),
        },
        None => AssumeFailure {
            code: "RequestFailed".into(),
            message: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// Hands the cached credentials to SDK clients (configured without an identity cache of their own,
/// so every request asks here and a refresh is never missed).
#[derive(Debug, Clone)]
pub(crate) struct SharedRole(pub(crate) std::sync::Arc<RoleCredentials>);

impl ProvideCredentials for SharedRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.0
                .credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_margin_is_five_minutes_or_a_fifth_of_the_lifetime() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(900)),
            Duration::from_secs(180)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(2)),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn session_names_are_readable_and_within_sts_limits() {
        assert_eq!(session_name("222222222222"), "tidemark-222222222222");
        assert!(session_name(&"x".repeat(100)).len() <= 64);
        assert_eq!(session_name("a b/c"), "tidemark-abc");
    }

    #[test]
    fn debug_output_never_shows_the_external_id() {
        let m = AssumeMethod::AssumeRole {
            external_id: Some(Secret::new("s3cr3t-external")),
        };
        assert!(!format!("{m:?}").contains("s3cr3t"));
    }
}
