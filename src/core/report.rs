//! What a source reports besides its items: how discovery, every account and every listing
//! went. Only complete reports prove anything gone (`docs/contract.md`, "Reconcile rules").

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::core::model::KindSpec;

/// Which regions to list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Regions {
    /// Each account's enabled regions (aws), every recorded region (snapshot).
    Enabled,
    List(Vec<String>),
}

/// What the mappings need listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ListRequest {
    /// Kinds to list; never includes the synthetic `AWS::Account::Info`.
    pub kinds: Vec<KindSpec>,
    pub regions: Regions,
}

/// How account discovery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryStatus {
    Ok,
    /// Organizations was denied or not in use; only the base account was synced.
    Fallback,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    pub status: DiscoveryStatus,
    pub error: Option<String>,
}

impl Discovery {
    pub fn ok() -> Discovery {
        Discovery {
            status: DiscoveryStatus::Ok,
            error: None,
        }
    }

    /// Only a complete discovery proves that a missing account is gone.
    pub fn is_complete(&self) -> bool {
        self.status == DiscoveryStatus::Ok
    }
}

/// One discovered account and how reaching it went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The Organizations status (`ACTIVE`, …) where known.
    pub status: Option<String>,
    /// The account's own ARN from Organizations.
    pub arn: Option<String>,
    /// The role tidemark assumes in it.
    pub role_arn: Option<String>,
    pub assumed: bool,
    /// Why the role could not be assumed, with the advice to try.
    pub error: Option<String>,
    /// The regions listed for it.
    pub regions: Vec<String>,
    /// Why its regions could not be listed; all its scopes are then incomplete.
    pub regions_error: Option<String>,
}

/// One (account, region, kind, resource model) listing. Only complete listings are `error: None`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listing {
    pub account: String,
    pub region: String,
    pub kind: String,
    /// The resource model listed with ([`crate::core::model::model_key`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub error: Option<String>,
    /// The `error` says the type does not exist in this region (`TypeNotFoundException`,
    /// `UnsupportedActionException`): nothing there to list, so the listing counts as complete
    /// and empty, except for owned entities that it could have produced and that are no longer
    /// listed, whose deletes it withholds. Code that does not know this treats it as failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unavailable: bool,
}

/// Whether every account was discovered, assumed and had its regions listed: what `accounts`
/// and `snapshot` call complete (exit 0 rather than 3).
pub fn accounts_complete(discovery: &Discovery, accounts: &[AccountReport]) -> bool {
    discovery.is_complete()
        && accounts
            .iter()
            .all(|a| a.assumed && a.regions_error.is_none())
}

/// Everything a source says about a run besides the items themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub discovery: Discovery,
    pub accounts: Vec<AccountReport>,
    /// Every listing that was attempted or that was needed and not possible, ok or failed.
    pub listings: Vec<Listing>,
}

/// Whether `id` is an AWS account id: 12 digits. Account ids from Organizations, STS or a
/// snapshot manifest become snapshot paths (`DIR/<account>/<region>/…`), so an account with
/// any other id fails instead of being synced.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `region` is spelt like an AWS region (`eu-west-1`): lowercase letters, digits and
/// dashes. Region names become snapshot paths too.
pub fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why an account with an id that [`is_account_id`] refuses is not synced.
pub fn not_an_account_id(id: &str) -> String {
    format!("account id {id:?} is not 12 digits, so the account is not synced")
}

/// Why `region`, which [`is_region_name`] refuses, cannot be used.
pub fn not_a_region_name(region: &str) -> String {
    format!("region {region:?} is not a region name (lowercase letters, digits and dashes)")
}

/// Why an account is not synced when one of its regions is not spelt like one; `None` when
/// every region is.
pub fn misspelt_region(regions: &[String]) -> Option<String> {
    regions
        .iter()
        .find(|r| !is_region_name(r))
        .map(|r| not_a_region_name(r))
}

/// The deepest `Properties` a source passes on, in levels of arrays and objects. serde_json
/// reads at most 128 levels, and items travel wrapped deeper than their `Properties`: one level
/// to the watch's mapping worker, two in a snapshot file. 100 leaves room for both, and real
/// AWS resources nest a handful of levels.
pub const MAX_PROPERTIES_DEPTH: usize = 100;

/// Whether `properties` nests more than [`MAX_PROPERTIES_DEPTH`] levels of arrays and objects.
/// A source fails such an item like unreadable `Properties`, since tidemark could not read it
/// back where it hands it on.
pub fn is_too_deep(properties: &Json) -> bool {
    // A loop, not recursion: the value may be as deep as its parser allowed.
    // Runs on every listed item, so children are pushed as they are, with no iterator boxed.
    let mut pending = vec![(properties, 0usize)];
    while let Some((value, above)) = pending.pop() {
        let level = above + 1;
        match value {
            Json::Array(_) | Json::Object(_) if level > MAX_PROPERTIES_DEPTH => return true,
            Json::Array(items) => pending.extend(items.iter().map(|child| (child, level))),
            Json::Object(fields) => pending.extend(fields.values().map(|child| (child, level))),
            _ => {}
        }
    }
    false
}
