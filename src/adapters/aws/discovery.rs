//! Account discovery: the base account, an explicit list of role ARNs, or AWS Organizations
//! (`ListAccounts`, or a walk of the configured OUs), with the fallback docs/contract.md asks for.

use std::collections::{BTreeSet, HashSet};

use aws_sdk_organizations::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_organizations::types::Account;

use super::listing::outcome_of;
use super::pages::{Pages, PaginationError};
use crate::adapters::requests::{Outcome, RequestCounter};
use crate::core::report::is_account_id;

/// One account to sync and the role to enter it with (`None`: the base credentials' own account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: Option<String>,
    pub arn: Option<String>,
    pub role_arn: Option<String>,
}

impl Target {
    pub(crate) fn bare(id: String, role_arn: Option<String>) -> Target {
        Target {
            id,
            name: None,
            email: None,
            status: None,
            arn: None,
            role_arn,
        }
    }
}

/// The parts of a role ARN: `arn:<partition>:iam::<account>:role/<path/><name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoleArn<'a> {
    pub partition: &'a str,
    pub account: &'a str,
    /// `role/<path/><name>`
    pub resource: &'a str,
}

pub(crate) fn parse_role_arn(arn: &str) -> Option<RoleArn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (prefix == "arn" && service == "iam" && is_account_id(account) && resource.starts_with("role/"))
        .then_some(RoleArn {
            partition,
            account,
            resource,
        })
}

/// The member role in Organizations mode: same partition, path and name, the member's account.
pub(crate) fn member_role_arn(org_role: &RoleArn<'_>, member: &str) -> String {
    format!(
        "arn:{}:iam::{member}:{}",
        org_role.partition, org_role.resource
    )
}

/// How an Organizations listing ended.
pub(crate) enum OrgsFailure {
    /// Denied or not in use: fall back to the base account, as Ocean does, and say so.
    Fallback(String),
    Failed(String),
}

fn orgs_failure<E, R>(err: SdkError<E, R>) -> OrgsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.code() {
        Some(code) => {
            let text = format!("{code}: {}", err.message().unwrap_or_default());
            if matches!(
                code,
                "AccessDeniedException" | "AccessDenied" | "AWSOrganizationsNotInUseException"
            ) {
                OrgsFailure::Fallback(text)
            } else {
                OrgsFailure::Failed(text)
            }
        }
        None => OrgsFailure::Failed(DisplayErrorContext(&err).to_string()),
    }
}

/// A listing that does not end is a failed discovery: its accounts so far may not be all.
fn paging_failure(operation: &str, error: PaginationError) -> OrgsFailure {
    OrgsFailure::Failed(format!("{operation}: {}: {error}", error.code()))
}

/// ACTIVE accounts only: `State` where the answer has it, else the older `Status`.
fn is_active(account: &Account) -> bool {
    match (account.state(), account.status()) {
        (Some(state), _) => state.as_str() == "ACTIVE",
        (None, Some(status)) => status.as_str() == "ACTIVE",
        (None, None) => false,
    }
}

fn target_of(account: &Account, org_role: &RoleArn<'_>) -> Option<Target> {
    let id = account.id()?.to_string();
    Some(Target {
        role_arn: Some(member_role_arn(org_role, &id)),
        name: account.name().map(str::to_string),
        email: account.email().map(str::to_string),
        status: account
            .state()
            .map(|s| s.as_str().to_string())
            .or_else(|| account.status().map(|s| s.as_str().to_string())),
        arn: account.arn().map(str::to_string),
        id,
    })
}

/// The `service` label of Organizations requests in the metrics.
const ORGANIZATIONS: &str = "organizations";

/// Counts one Organizations call; the SDK's own retries happen inside it and are not seen here.
fn count<T, E>(requests: &RequestCounter, operation: &'static str, sent: &Result<T, SdkError<E>>)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let outcome = match sent {
        Ok(_) => Outcome::Ok,
        Err(e) => outcome_of(e),
    };
    requests.attempt(ORGANIZATIONS, operation, outcome);
}

/// Every ACTIVE account of the organization, or of the given OUs and their children.
pub(crate) async fn list_organization(
    orgs: &aws_sdk_organizations::Client,
    org_role: &RoleArn<'_>,
    organizational_units: &[String],
    requests: &RequestCounter,
) -> Result<Vec<Target>, OrgsFailure> {
    let mut accounts = Vec::new();
    if organizational_units.is_empty() {
        let mut next_token = None;
        let mut pages = Pages::new();
        loop {
            let sent = orgs.list_accounts().set_next_token(next_token).send().await;
            count(requests, "ListAccounts", &sent);
            let page = sent.map_err(orgs_failure)?;
            accounts.extend(page.accounts().iter().cloned());
            next_token = pages
                .follow(page.next_token())
                .map_err(|e| paging_failure("ListAccounts", e))?;
            if next_token.is_none() {
                break;
            }
        }
        // The management account is always a member, so an empty answer is not an organization:
        // it is what some stand-ins give a caller that AWS would deny. Proving every account gone
        // from it would be exactly the mistake this tool exists to avoid.
        if accounts.is_empty() {
            return Err(OrgsFailure::Failed(
                "ListAccounts returned no account, not even the management account".into(),
            ));
        }
    } else {
        // Breadth-first over the OU tree; `visited` guards against listing a child OU twice when
        // both it and its parent are configured.
        let mut queue: Vec<String> = organizational_units.to_vec();
        let mut visited = BTreeSet::new();
        while let Some(parent) = queue.pop() {
            if !visited.insert(parent.clone()) {
                continue;
            }
            let mut next_token = None;
            let mut pages = Pages::new();
            loop {
                let sent = orgs
                    .list_accounts_for_parent()
                    .parent_id(&parent)
                    .set_next_token(next_token)
                    .send()
                    .await;
                count(requests, "ListAccountsForParent", &sent);
                let page = sent.map_err(orgs_failure)?;
                accounts.extend(page.accounts().iter().cloned());
                next_token = pages
                    .follow(page.next_token())
                    .map_err(|e| paging_failure("ListAccountsForParent", e))?;
                if next_token.is_none() {
                    break;
                }
            }
            let mut next_token = None;
            let mut pages = Pages::new();
            loop {
                let sent = orgs
                    .list_organizational_units_for_parent()
                    .parent_id(&parent)
                    .set_next_token(next_token)
                    .send()
                    .await;
                count(requests, "ListOrganizationalUnitsForParent", &sent);
                let page = sent.map_err(orgs_failure)?;
                queue.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|ou| ou.id().map(str::to_string)),
                );
                next_token = pages
                    .follow(page.next_token())
                    .map_err(|e| paging_failure("ListOrganizationalUnitsForParent", e))?;
                if next_token.is_none() {
                    break;
                }
            }
        }
    }
    let mut seen = HashSet::new();
    Ok(accounts
        .iter()
        .filter(|a| is_active(a))
        .filter_map(|a| target_of(a, org_role))
        .filter(|t| seen.insert(t.id.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_roles_keep_the_partition_path_and_name() {
        let org = parse_role_arn("arn:aws-us-gov:iam::111111111111:role/team/PortOceanReadRole")
            .expect("valid ARN");
        assert_eq!(
            member_role_arn(&org, "222222222222"),
            "arn:aws-us-gov:iam::222222222222:role/team/PortOceanReadRole"
        );
    }

    #[test]
    fn malformed_role_arns_are_rejected() {
        assert!(parse_role_arn("arn:aws:iam::1111:role/R").is_none());
        assert!(parse_role_arn("arn:aws:iam::111111111111:user/bob").is_none());
        assert!(parse_role_arn("not an arn").is_none());
        assert_eq!(
            parse_role_arn("arn:aws:iam::111111111111:role/R").map(|r| r.account),
            Some("111111111111")
        );
    }

    #[test]
    fn only_active_accounts_are_kept_by_state_or_status() {
        use aws_sdk_organizations::types::{AccountState, AccountStatus};
        let by_status = Account::builder()
            .id("1")
            .status(AccountStatus::Active)
            .build();
        let suspended = Account::builder()
            .id("2")
            .status(AccountStatus::Suspended)
            .build();
        let state_wins = Account::builder()
            .id("3")
            .status(AccountStatus::Active)
            .state(AccountState::Suspended)
            .build();
        assert!(is_active(&by_status));
        assert!(!is_active(&suspended));
        assert!(!is_active(&state_wins));
    }
}
