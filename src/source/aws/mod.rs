//! The AWS source: base credentials, account discovery, member role assumption, regions and
//! Cloud Control listing. CONFIG TYPES ONLY for now; the source is being written.

use crate::secret::Secret;
use crate::source::Regions;

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
