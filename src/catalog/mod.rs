//! Catalogs hold blueprints and entities. tidemark reads what it owns, checks foreign owners,
//! and applies an ordered list of writes. Two adapters: `local` (SQLite) and `port` (Port's API).

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::model::{
    Blueprint, Entity, EntityKey, ForeignEntity, ForeignReference, OwnedEntity, WriteOptions,
};
use crate::requests::RequestCount;

pub mod local;
pub mod port;
pub mod query;
pub mod validate;

/// A change to a blueprint. Additive only: nothing is ever removed or altered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum BlueprintChange {
    /// Create the blueprint. Relations are added in a second step so cycles work.
    Create {
        identifier: String,
        definition: Blueprint,
    },
    /// Add properties and relations the existing blueprint lacks.
    Update {
        identifier: String,
        add_properties: Map<String, Json>,
        add_relations: Map<String, Json>,
    },
}

impl BlueprintChange {
    pub fn identifier(&self) -> &str {
        match self {
            BlueprintChange::Create { identifier, .. }
            | BlueprintChange::Update { identifier, .. } => identifier,
        }
    }
}

/// One entity write, in the order the plan wants it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upsert {
    /// With `write.merge`, only the fields the mapping defines; otherwise the whole entity.
    pub entity: Entity,
    /// The account the entity is attributed to from now on.
    pub account: String,
    pub kind: String,
    pub write: WriteOptions,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delete {
    pub key: EntityKey,
    pub account: Option<String>,
}

/// Everything `apply` writes, already ordered: blueprints, upserts (relation targets first), deletes
/// (dependents first).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Writes {
    pub blueprints: Vec<BlueprintChange>,
    pub upserts: Vec<Upsert>,
    pub deletes: Vec<Delete>,
}

/// A write the catalog refused, with its message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub action: String,
    pub key: EntityKey,
    pub message: String,
}

/// What an apply did. `written` lists every write the catalog confirmed, even when the apply
/// stopped early (`stopped` then says why).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub blueprints_written: Vec<String>,
    pub upserted: Vec<EntityKey>,
    pub deleted: Vec<EntityKey>,
    pub rejected: Vec<Rejected>,
    /// Write requests sent (bulk requests count once).
    pub write_requests: usize,
    pub stopped: Option<String>,
}

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

/// Reports progress of a long apply (a progress bar on a terminal).
pub trait Progress: Send + Sync {
    fn start(&self, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
    /// Asked before each batch of writes: `true` ends the apply after the writes already sent
    /// (the daemon's shutdown), with [`ApplyReport::stopped`] saying so.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// What [`ApplyReport::stopped`] says when [`Progress::stop_requested`] ended an apply.
pub const STOPPED_ON_REQUEST: &str =
    "stopped on request (shutdown) after the writes in flight; the next run writes the rest";

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A catalog tidemark reconciles into. `owner` is the integration identifier.
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

    /// Requests sent to a remote API since the last call, for the daemon's metrics (see
    /// [`crate::requests::RequestCounter::take`]). Catalogs that call no API have none.
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

    fn take_requests(&self) -> Vec<RequestCount> {
        Vec::new()
    }
}
