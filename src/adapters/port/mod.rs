//! The Port catalog: REST client, ownership per account through `$datasource`, bulk writes,
//! retries and blueprint bootstrap.
//!
//! Ownership scheme. Port records the User-Agent of the request that last wrote an entity as its
//! `$datasource`. Every write tidemark sends carries `tidemark/<version>/<integration>/<account>`,
//! so the datasource says which integration owns the entity and which account it came from.
//! Reading current state never matches the version, so upgrading tidemark orphans nothing:
//! * per discovered account, the ownership listing (`datasource-entities`) with prefix
//!   `tidemark/` and suffix `/<integration>/<account>` attributes entities to that account;
//! * per blueprint, one paginated search with `$datasource contains "tidemark/"` and
//!   `contains "/<integration>/"` returns every owned entity with the compared fields, including
//!   those of accounts that are no longer discovered; an entity no account listing claims has an
//!   unknown account.
//!
//! Port does not document `$datasource` in search answers, so foreign owners are found by query:
//! an identifier that exists but is not in our owned search is foreign; its owner is the
//! `$datasource` when Port returns one, else the first adoption prefix whose `contains` search
//! finds it, else unknown (empty). Foreign references are found per blueprint with a relation to
//! one of our blueprints: a search with a relation rule (`{"relation", "operator": "in"}`, the
//! only way Port's search names a relation), minus our own.
//!
//! Other details the core relies on: `kind` of an owned entity is always `None` (Port keeps no
//! place for it); `placeholder` marks entities with nothing but an identifier (what
//! `create_missing_related_entities` creates); rejected writes carry the action `upsert` or
//! `delete`. Read budget per plan: one blueprint list, one ownership listing page per account
//! (5,000 per page), one search page per blueprint (1,000 per page), and for the foreign check
//! one search per 100 planned creates (two when some exist). [`PortCatalog::requests`] counts
//! them.

use crate::core::shard::Shard;
use std::sync::Arc;

use crate::core::writes::{ApplyReport, Progress, Writes};

use crate::adapters::{Catalog, CatalogError, ReadCheck};
use serde_json::Value as Json;

use crate::core::model::{Blueprint, EntityKey, ForeignEntity, ForeignReference, OwnedEntity};
use crate::core::secret::Secret;

mod client;
mod read;
mod write;

pub use client::{PortError, RequestCounts, RetryPolicy};

use client::Http;

/// The start of every User-Agent tidemark writes with; the version follows it.
pub const AGENT_PREFIX: &str = "tidemark/";

/// `catalog:` of a `type: port` config, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct PortConfig {
    /// Without a trailing slash, e.g. `https://api.port.io`.
    pub base_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
}

/// How hard the client works Port. The defaults suit production; tests shorten the delays.
#[derive(Clone, Debug)]
pub struct PortOptions {
    /// Requests in flight at once, across every operation.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// `integration.adopt`: `$datasource` prefixes tried when Port does not say who owns an
    /// entity, so that adoption works without `$datasource` in search answers.
    pub adopt_prefixes: Vec<String>,
    /// The shard this process runs as: only its accounts are probed when proving which account
    /// an entity that no discovered account claims came from.
    pub shard: Option<Shard>,
}

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            concurrency: 8,
            retry: RetryPolicy::default(),
            adopt_prefixes: Vec::new(),
            shard: None,
        }
    }
}

/// Port's SaaS catalog, for one integration.
pub struct PortCatalog {
    http: Arc<Http>,
    base_url: String,
    integration: String,
    adopt_prefixes: Vec<String>,
    shard: Option<Shard>,
}

impl std::fmt::Debug for PortCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortCatalog")
            .field("base_url", &self.base_url)
            .field("integration", &self.integration)
            .finish_non_exhaustive()
    }
}

impl PortCatalog {
    pub fn new(config: PortConfig, integration: &str) -> Result<PortCatalog, CatalogError> {
        PortCatalog::with_options(config, integration, PortOptions::default())
    }

    pub fn with_options(
        config: PortConfig,
        integration: &str,
        options: PortOptions,
    ) -> Result<PortCatalog, CatalogError> {
        if !is_valid_integration(integration) {
            return Err(CatalogError::Port(format!(
                "integration identifier {integration:?} must match [a-z0-9][a-z0-9-]{{0,62}}"
            )));
        }
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let agent = format!("{AGENT_PREFIX}{}/{integration}", env!("CARGO_PKG_VERSION"));
        let http = Http::new(config, agent, options.retry, options.concurrency)
            .map_err(|e| CatalogError::Port(e.to_string()))?;
        Ok(PortCatalog {
            http: Arc::new(http),
            base_url,
            integration: integration.to_string(),
            adopt_prefixes: options.adopt_prefixes,
            shard: options.shard,
        })
    }

    /// Requests sent so far (reads, writes and token requests), retries included.
    pub fn requests(&self) -> RequestCounts {
        self.http.counts()
    }

    /// The User-Agent, and so the `$datasource`, of entities written for `account`.
    pub fn user_agent(&self, account: &str) -> String {
        self.http.user_agent(Some(account))
    }

    fn check_owner(&self, owner: &str) -> Result<(), CatalogError> {
        if owner == self.integration {
            Ok(())
        } else {
            Err(CatalogError::Port(format!(
                "this Port catalog writes as integration {:?}, not {owner:?}",
                self.integration
            )))
        }
    }
}

/// the contract's rule for `integration.identifier`; it is a path-free segment of the User-Agent.
fn is_valid_integration(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn port_error(e: PortError) -> CatalogError {
    CatalogError::Port(e.to_string())
}

impl Catalog for PortCatalog {
    fn describe(&self) -> String {
        format!("port {}", self.base_url)
    }

    fn take_requests(&self) -> Vec<crate::adapters::requests::RequestCount> {
        self.http.requests().take()
    }

    async fn blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        read::list_blueprints(&self.http).await.map_err(port_error)
    }

    async fn owned(
        &self,
        owner: &str,
        accounts: &[String],
    ) -> Result<Vec<OwnedEntity>, CatalogError> {
        self.check_owner(owner)?;
        read::owned(&self.http, &self.integration, accounts, self.shard.as_ref())
            .await
            .map_err(port_error)
    }

    async fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        self.check_owner(owner)?;
        read::foreign(&self.http, &self.integration, &self.adopt_prefixes, keys)
            .await
            .map_err(port_error)
    }

    async fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        self.check_owner(owner)?;
        read::foreign_references(&self.http, &self.integration, keys)
            .await
            .map_err(port_error)
    }

    async fn search(&self, blueprint: &str, query: &Json) -> Result<Vec<String>, CatalogError> {
        read::search_identifiers(&self.http, blueprint, query)
            .await
            .map_err(port_error)
    }

    async fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> Result<Vec<ReadCheck>, CatalogError> {
        self.check_owner(owner)?;
        read::preflight(
            &self.http,
            &self.integration,
            &self.adopt_prefixes,
            blueprints,
        )
        .await
        .map_err(port_error)
    }

    async fn apply(&self, owner: &str, writes: &Writes, progress: &dyn Progress) -> ApplyReport {
        if let Err(e) = self.check_owner(owner) {
            return ApplyReport {
                stopped: Some(crate::core::writes::Stop::Failed(e.to_string())),
                ..ApplyReport::default()
            };
        }
        write::apply(&self.http, writes, progress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PortConfig {
        PortConfig {
            base_url: "https://api.port.io/".into(),
            client_id: Secret::new("id-123"),
            client_secret: Secret::new("hunter2"),
        }
    }

    #[test]
    fn the_user_agent_names_tidemark_the_integration_and_the_account() {
        let catalog = PortCatalog::new(config(), "aws-prod").expect("valid");
        assert_eq!(
            catalog.user_agent("111111111111"),
            format!(
                "tidemark/{}/aws-prod/111111111111",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(catalog.describe(), "port https://api.port.io");
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let catalog = PortCatalog::new(config(), "aws-prod").expect("valid");
        let shown = format!("{catalog:?} {:?}", config());
        assert!(
            !shown.contains("hunter2") && !shown.contains("id-123"),
            "{shown}"
        );
    }

    #[test]
    fn integration_identifiers_that_would_break_the_user_agent_are_refused() {
        for bad in ["", "Aws", "aws/prod", "-aws", &"a".repeat(64)] {
            assert!(PortCatalog::new(config(), bad).is_err(), "{bad:?}");
        }
        assert!(PortCatalog::new(config(), &"a".repeat(63)).is_ok());
    }
}
