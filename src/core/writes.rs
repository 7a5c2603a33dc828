//! What `apply` writes and what the catalog says it did. The plan produces [`Writes`], ordered;
//! a catalog adapter turns them into requests and answers with an [`ApplyReport`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::core::model::{Blueprint, Entity, EntityKey, WriteOptions};

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

/// Which kind of write a catalog refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteAction {
    Blueprint,
    Upsert,
    Delete,
}

impl std::fmt::Display for WriteAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteAction::Blueprint => "blueprint",
            WriteAction::Upsert => "upsert",
            WriteAction::Delete => "delete",
        })
    }
}

/// A write the catalog refused, with its message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub action: WriteAction,
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
    pub stopped: Option<Stop>,
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
    /// Raised before a pass sends its first write and lowered after its last, so that a
    /// shutdown knows whether an apply is running.
    fn applying(&self, _on: bool) {}
}

/// Why an apply ended before its last write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Stop {
    /// [`Progress::stop_requested`] (the daemon's shutdown) ended it after the writes in flight.
    OnRequest,
    /// The catalog failed in a way that stops the apply; its message.
    Failed(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::OnRequest => f.write_str(
                "stopped on request (shutdown) after the writes in flight; the next run writes the rest",
            ),
            Stop::Failed(message) => f.write_str(message),
        }
    }
}

impl From<Stop> for String {
    fn from(stop: Stop) -> String {
        stop.to_string()
    }
}

impl From<String> for Stop {
    fn from(text: String) -> Stop {
        if text == Stop::OnRequest.to_string() {
            Stop::OnRequest
        } else {
            Stop::Failed(text)
        }
    }
}

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
