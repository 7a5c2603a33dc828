//! What a catalog is: holds blueprints and entities; tidemark reads what it owns, checks foreign
//! owners, and applies ordered writes. Adapters: [`super::local`] (SQLite) and [`super::port`].

use std::future::Future;

use serde_json::Value as Json;

use crate::adapters::requests::RequestCount;
use crate::core::model::{Blueprint, EntityKey, ForeignEntity, ForeignReference, OwnedEntity};
use crate::core::writes::{ApplyReport, Progress, Writes};

/// Catalog failures that stop the run.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("local catalog {path}: {message}")]
    Local { path: String, message: String },
    #[error(
        "the local catalog {path} is locked by another apply (pid {pid}); wait for it to finish"
    )]
    Locked { path: String, pid: String },
    #[error("Port: {0}")]
    Port(String),
}

/// The identifier `validate --catalog` searches for: a valid Port identifier that no resource
/// maps to, so the reads it sends are the reconciler's in shape and return nothing.
pub const PREFLIGHT_IDENTIFIER: &str = "tidemark-preflight-probe";

/// One read `validate --catalog` ran against a catalog, and what the catalog said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCheck {
    /// The blueprint the read is about; `None` for reads of the whole catalog.
    pub blueprint: Option<String>,
    /// The read as a user knows it, e.g. `search of owned entities`.
    pub read: String,
    pub outcome: ReadOutcome,
}

/// How a catalog answered one of the reconciler's reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Accepted,
    /// The catalog refused the read; its message.
    Refused(String),
    /// The blueprint does not exist in the catalog.
    Missing,
}

impl ReadCheck {
    /// Whether this answer means the reconciler would fail: a refused read, or a blueprint the
    /// catalog lacks that no `blueprints.json` defines (so `apply` cannot create it).
    pub fn is_failure(&self, defined: &dyn Fn(&str) -> bool) -> bool {
        match &self.outcome {
            ReadOutcome::Accepted => false,
            ReadOutcome::Refused(_) => true,
            ReadOutcome::Missing => !self.blueprint.as_deref().is_some_and(defined),
        }
    }

    pub fn new(blueprint: Option<&str>, read: impl Into<String>, outcome: ReadOutcome) -> Self {
        ReadCheck {
            blueprint: blueprint.map(str::to_string),
            read: read.into(),
            outcome,
        }
    }
}

/// A catalog tidemark reconciles into. `owner` is the integration identifier.
pub trait Catalog: Send + Sync {
    /// Names the catalog in plans (`local /path/catalog.db`, `port https://api.port.io`).
    fn describe(&self) -> String;

    /// Every blueprint in the catalog.
    fn blueprints(&self) -> impl Future<Output = Result<Vec<Blueprint>, CatalogError>> + Send;

    /// Every entity `owner` owns, in any blueprint. `accounts` are the discovered accounts, for
    /// catalogs that attribute entities by querying per account.
    fn owned(
        &self,
        owner: &str,
        accounts: &[String],
    ) -> impl Future<Output = Result<Vec<OwnedEntity>, CatalogError>> + Send;

    /// Entities at `keys` that exist under another owner.
    fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> impl Future<Output = Result<Vec<ForeignEntity>, CatalogError>> + Send;

    /// Entities of other owners that relate to any of `keys`.
    fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> impl Future<Output = Result<Vec<ForeignReference>, CatalogError>> + Send;

    /// Applies `writes` in order. Per-entity refusals go into `rejected`; a failure that stops the
    /// apply is returned inside the report (`stopped`) so nothing written is forgotten.
    fn apply(
        &self,
        owner: &str,
        writes: &Writes,
        progress: &dyn Progress,
    ) -> impl Future<Output = ApplyReport> + Send;

    /// The identifiers of the entities of `blueprint`, of any owner, that match `query` (a Port
    /// search query, `{combinator, rules}`): how search relations are resolved. A blueprint the
    /// catalog lacks has none.
    fn search(
        &self,
        blueprint: &str,
        query: &Json,
    ) -> impl Future<Output = Result<Vec<String>, CatalogError>> + Send;

    /// Runs every read the reconciler makes for `blueprints`, read-only and at the smallest
    /// page size, and reports how the catalog answered each (`validate --catalog`). An error is
    /// a failure to reach or authenticate with the catalog at all.
    fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> impl Future<Output = Result<Vec<ReadCheck>, CatalogError>> + Send;

    /// Requests sent to a remote API since the last call, for the daemon's metrics (see
    /// [`crate::adapters::requests::RequestCounter::take`]). Catalogs that call no API have none.
    fn take_requests(&self) -> Vec<RequestCount> {
        Vec::new()
    }
}
