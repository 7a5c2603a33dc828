//! What `apply` writes and what the catalog says it did. The plan produces [`Writes`], ordered;
//! a catalog adapter turns them into requests and answers with an [`ApplyReport`].

use std::collections::HashMap;

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

/// One apply's record as it goes, kept the same way by every catalog: the writes confirmed and
/// refused, and the progress shown. An entity write advances the progress once, when it is
/// settled (written or refused); blueprint changes advance it with [`Tally::advance`], because one
/// blueprint may be created and still have a relation refused.
pub struct Tally<'a> {
    writes: &'a Writes,
    report: ApplyReport,
    progress: &'a dyn Progress,
}

impl<'a> Tally<'a> {
    /// Starts the progress at the number of writes in `writes`.
    pub fn start(writes: &'a Writes, progress: &'a dyn Progress) -> Tally<'a> {
        progress
            .start((writes.blueprints.len() + writes.upserts.len() + writes.deletes.len()) as u64);
        Tally {
            writes,
            report: ApplyReport::default(),
            progress,
        }
    }

    /// Whether the daemon's shutdown asks the apply to send nothing more.
    pub fn stop_requested(&self) -> bool {
        self.progress.stop_requested()
    }

    pub fn advance(&self, n: u64) {
        self.progress.advance(n);
    }

    pub fn blueprint_written(&mut self, identifier: String) {
        self.report.blueprints_written.push(identifier);
    }

    pub fn upserted(&mut self, key: EntityKey) {
        self.report.upserted.push(key);
        self.progress.advance(1);
    }

    pub fn deleted(&mut self, key: EntityKey) {
        self.report.deleted.push(key);
        self.progress.advance(1);
    }

    /// A write the catalog refused; an entity write's refusal settles it.
    pub fn rejected(&mut self, action: WriteAction, key: EntityKey, message: String) {
        if action != WriteAction::Blueprint {
            self.progress.advance(1);
        }
        self.report.rejected.push(Rejected {
            action,
            key,
            message,
        });
    }

    /// How many writes the catalog has confirmed so far: blueprints, upserts and deletes.
    pub fn confirmed_count(&self) -> usize {
        let report = &self.report;
        report.blueprints_written.len() + report.upserted.len() + report.deleted.len()
    }

    /// How many upserts the catalog has confirmed so far.
    pub fn upserted_count(&self) -> usize {
        self.report.upserted.len()
    }

    /// Ends the progress and hands over the report.
    pub fn finish(mut self, stopped: Option<Stop>, write_requests: usize) -> ApplyReport {
        self.progress.finish();
        self.refusals_in_plan_order();
        self.report.stopped = stopped;
        self.report.write_requests = write_requests;
        self.report
    }
}

impl Tally<'_> {
    /// Puts the refusals, which users read, in the order of the plan's writes: a catalog settles
    /// concurrent requests and retried upserts in an order of its own.
    fn refusals_in_plan_order(&mut self) {
        if self.report.rejected.len() < 2 {
            return;
        }
        let writes = self.writes;
        let blueprints: HashMap<&str, usize> = (writes.blueprints.iter())
            .enumerate()
            .map(|(i, b)| (b.identifier(), i))
            .collect();
        let upserts: HashMap<(&str, &str), usize> = (writes.upserts.iter())
            .enumerate()
            .map(|(i, u)| {
                (
                    (u.entity.blueprint.as_str(), u.entity.identifier.as_str()),
                    i,
                )
            })
            .collect();
        let deletes: HashMap<(&str, &str), usize> = (writes.deletes.iter())
            .enumerate()
            .map(|(i, d)| ((d.key.blueprint.as_str(), d.key.identifier.as_str()), i))
            .collect();
        self.report.rejected.sort_by_key(|r| {
            let key = (r.key.blueprint.as_str(), r.key.identifier.as_str());
            let position = match r.action {
                WriteAction::Blueprint => blueprints.get(key.0),
                WriteAction::Upsert => upserts.get(&key),
                WriteAction::Delete => deletes.get(&key),
            };
            (r.action as u8, position.copied().unwrap_or(usize::MAX))
        });
    }
}

/// No progress reporting.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_come_out_in_the_order_of_the_plans_writes() {
        let upsert = |identifier: &str| Upsert {
            entity: Entity::new("bucket", identifier),
            account: "1".into(),
            kind: "AWS::S3::Bucket".into(),
            write: WriteOptions::default(),
        };
        let writes = Writes {
            blueprints: vec![BlueprintChange::Update {
                identifier: "bucket".into(),
                add_properties: Map::new(),
                add_relations: Map::new(),
            }],
            upserts: vec![upsert("a"), upsert("b"), upsert("c")],
            deletes: vec![Delete {
                key: EntityKey::new("bucket", "d"),
                account: None,
            }],
        };
        let mut tally = Tally::start(&writes, &NoProgress);
        for (action, identifier) in [
            (WriteAction::Delete, "d"),
            (WriteAction::Upsert, "c"),
            (WriteAction::Upsert, "a"),
            (WriteAction::Blueprint, ""),
        ] {
            tally.rejected(
                action,
                EntityKey::new("bucket", identifier),
                "refused".into(),
            );
        }
        let report = tally.finish(None, 0);
        let order: Vec<(WriteAction, &str)> = (report.rejected.iter())
            .map(|r| (r.action, r.key.identifier.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (WriteAction::Blueprint, ""),
                (WriteAction::Upsert, "a"),
                (WriteAction::Upsert, "c"),
                (WriteAction::Delete, "d"),
            ]
        );
    }
}
