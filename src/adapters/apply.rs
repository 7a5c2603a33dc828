//! The apply loop both catalogs run. Blueprint changes come first, then upserts and then
//! deletes, each blueprint by blueprint in the order the plan gives. Before each step and each
//! blueprint, the loop asks whether a stop was requested; a catalog asks again before each
//! request it sends. A catalog only says how to write one blueprint's share ([`Writer`]).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use crate::core::writes::{
    ApplyReport, BlueprintChange, Delete, Progress, Stop, Tally, Upsert, WriteAction, Writes,
};

/// How one catalog writes. Each method writes what it is given, records each confirmed or
/// refused write in the tally, and returns a [`Stop`] when the apply must end: a requested stop
/// (after the requests in flight) or a failure of the catalog itself.
pub(crate) trait Writer: Send {
    /// All blueprint changes, in order.
    fn blueprints(
        &mut self,
        changes: &[BlueprintChange],
        tally: &mut Tally<'_>,
    ) -> impl Future<Output = Result<(), Stop>> + Send;

    /// The upserts of `blueprint`, each with its position among the apply's upserts. Those
    /// refused because a relation target does not exist (Port's 404 `not_found`) go into
    /// `missing` with the catalog's message instead of the tally: the loop tries them again.
    fn upserts(
        &mut self,
        blueprint: &str,
        stage: Vec<(usize, &Upsert)>,
        tally: &mut Tally<'_>,
        missing: &mut Vec<(usize, String)>,
    ) -> impl Future<Output = Result<(), Stop>> + Send;

    /// The deletes of `blueprint`.
    fn deletes(
        &mut self,
        blueprint: &str,
        stage: Vec<&Delete>,
        tally: &mut Tally<'_>,
    ) -> impl Future<Output = Result<(), Stop>> + Send;

    /// The write requests sent so far (a bulk request counts once), given what `tally` holds.
    fn write_requests(&self, tally: &Tally<'_>) -> usize;
}

/// Applies `writes` through `writer`. Whatever stops the apply is in the report's `stopped`,
/// beside every write confirmed before it.
pub(crate) async fn apply<W: Writer>(
    writer: &mut W,
    writes: &Writes,
    progress: &dyn Progress,
) -> ApplyReport {
    let mut tally = Tally::start(writes, progress);
    let stopped = steps(writer, writes, &mut tally).await.err();
    match &stopped {
        None => {}
        Some(Stop::OnRequest) => {
            tracing::info!("the apply stopped on request after the writes in flight");
        }
        Some(Stop::Failed(message)) => tracing::error!(error = %message, "the apply stopped"),
    }
    let requests = writer.write_requests(&tally);
    tally.finish(stopped, requests)
}

async fn steps<W: Writer>(
    writer: &mut W,
    writes: &Writes,
    tally: &mut Tally<'_>,
) -> Result<(), Stop> {
    // A stop ends an apply before its last write: each step checks before its first one, so an
    // apply with nothing to write has nothing to end.
    if !writes.blueprints.is_empty() {
        unless_stopped(tally)?;
        writer.blueprints(&writes.blueprints, tally).await?;
    }
    upserts(writer, &writes.upserts, tally).await?;
    // Deletes run only when every upsert got a definite answer: an uncertain one stops the apply
    // above, so nothing is deleted on a guess.
    for (blueprint, stage) in stages(writes.deletes.iter(), |d| d.key.blueprint.clone()) {
        unless_stopped(tally)?;
        writer.deletes(&blueprint, stage, tally).await?;
    }
    Ok(())
}

/// Upserts in passes. Those whose relation target was missing are tried again, in their order,
/// after the pass: a target written later in the same apply (a cycle between blueprints, a
/// chain within one) is found then. Passes go on while they write something, so every chain is
/// written whole; a pass that writes nothing leaves the catalog as the last one found it, so no
/// further pass could either, and what is left is refused with the catalog's message.
async fn upserts<W: Writer>(
    writer: &mut W,
    upserts: &[Upsert],
    tally: &mut Tally<'_>,
) -> Result<(), Stop> {
    let mut pending: Vec<(usize, &Upsert)> = upserts.iter().enumerate().collect();
    loop {
        let written_before = tally.upserted_count();
        let mut missing = Vec::new();
        for (blueprint, stage) in stages(pending, |(_, u)| u.entity.blueprint.clone()) {
            unless_stopped(tally)?;
            writer
                .upserts(&blueprint, stage, tally, &mut missing)
                .await?;
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tally.upserted_count() == written_before {
            for (i, message) in missing {
                tally.rejected(WriteAction::Upsert, upserts[i].entity.key(), message);
            }
            return Ok(());
        }
        missing.sort_by_key(|(i, _)| *i);
        tracing::debug!(
            count = missing.len(),
            "retrying upserts whose relation targets were missing"
        );
        pending = missing.into_iter().map(|(i, _)| (i, &upserts[i])).collect();
    }
}

/// `Err(Stop::OnRequest)` once a stop is requested.
pub(crate) fn unless_stopped(tally: &Tally<'_>) -> Result<(), Stop> {
    if tally.stop_requested() {
        Err(Stop::OnRequest)
    } else {
        Ok(())
    }
}

/// Items grouped by a key, groups in the order their key first appears, items in their order.
pub(crate) fn stages<T, K: Clone + Eq + Hash>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut order: Vec<(K, Vec<T>)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for item in items {
        let k = key(&item);
        match index.get(&k) {
            Some(&i) => order[i].1.push(item),
            None => {
                index.insert(k.clone(), order.len());
                order.push((k, vec![item]));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::core::model::{Entity, EntityKey};
    use crate::core::writes::NoProgress;

    /// A catalog in memory: an upsert whose `to` target is not written yet is missing; the
    /// identifier `refused` is refused outright; `fail_at` fails the n-th upserts call.
    #[derive(Default)]
    struct Memory {
        written: BTreeSet<String>,
        upsert_calls: usize,
        delete_calls: usize,
        fail_at: Option<usize>,
    }

    impl Writer for Memory {
        async fn blueprints(
            &mut self,
            changes: &[BlueprintChange],
            tally: &mut Tally<'_>,
        ) -> Result<(), Stop> {
            for change in changes {
                tally.blueprint_written(change.identifier().to_string());
            }
            tally.advance(changes.len() as u64);
            Ok(())
        }

        async fn upserts(
            &mut self,
            _blueprint: &str,
            stage: Vec<(usize, &Upsert)>,
            tally: &mut Tally<'_>,
            missing: &mut Vec<(usize, String)>,
        ) -> Result<(), Stop> {
            self.upsert_calls += 1;
            if self.fail_at == Some(self.upsert_calls) {
                return Err(Stop::Failed("the catalog is down".into()));
            }
            for (i, upsert) in stage {
                let entity = &upsert.entity;
                match entity.relation_targets().map(|(_, t)| t.to_string()).next() {
                    _ if entity.identifier == "refused" => {
                        tally.rejected(WriteAction::Upsert, entity.key(), "refused".into())
                    }
                    Some(target) if !self.written.contains(&target) => {
                        missing.push((i, format!("{target} not found")))
                    }
                    _ => {
                        self.written.insert(entity.identifier.clone());
                        tally.upserted(entity.key());
                    }
                }
            }
            Ok(())
        }

        async fn deletes(
            &mut self,
            _blueprint: &str,
            stage: Vec<&Delete>,
            tally: &mut Tally<'_>,
        ) -> Result<(), Stop> {
            self.delete_calls += 1;
            for delete in stage {
                tally.deleted(delete.key.clone());
            }
            Ok(())
        }

        fn write_requests(&self, _: &Tally<'_>) -> usize {
            self.written.len()
        }
    }

    /// Asks for a stop from its `n`-th question on (the first is asked before any write).
    struct StopAt(AtomicUsize, usize);

    impl Progress for StopAt {
        fn start(&self, _: u64) {}
        fn advance(&self, _: u64) {}
        fn finish(&self) {}
        fn stop_requested(&self) -> bool {
            self.0.fetch_add(1, Ordering::SeqCst) + 1 >= self.1
        }
    }

    fn upsert(identifier: &str, target: Option<&str>) -> Upsert {
        let mut entity = Entity::new("bucket", identifier);
        if let Some(target) = target {
            entity.relations = Some(serde_json::Map::from_iter([(
                "to".to_string(),
                json!(target),
            )]));
        }
        Upsert {
            entity,
            account: "111111111111".into(),
            kind: "AWS::S3::Bucket".into(),
            write: Default::default(),
        }
    }

    /// `n` upserts, each pointing at the one after it: the worst order for a chain.
    fn reversed_chain(n: usize) -> Vec<Upsert> {
        (1..=n)
            .rev()
            .map(|i| {
                let target = (i > 1).then(|| format!("b{}", i - 1));
                upsert(&format!("b{i}"), target.as_deref())
            })
            .collect()
    }

    /// `upserts`, then the delete of `bucket/gone`.
    fn then_delete_gone(upserts: Vec<Upsert>) -> Writes {
        Writes {
            upserts,
            deletes: vec![Delete {
                key: EntityKey::new("bucket", "gone"),
                account: None,
            }],
            ..Writes::default()
        }
    }

    #[tokio::test]
    async fn a_chain_of_any_length_is_written_whole_one_link_per_pass() {
        let writes = Writes {
            upserts: reversed_chain(25),
            ..Writes::default()
        };
        let mut memory = Memory::default();
        let report = apply(&mut memory, &writes, &NoProgress).await;
        assert_eq!(report.upserted.len(), 25);
        assert!(report.rejected.is_empty() && report.stopped.is_none());
        assert_eq!(memory.upsert_calls, 25);
    }

    #[tokio::test]
    async fn a_pass_that_writes_nothing_refuses_what_is_left_with_the_catalogs_message() {
        let mut upserts = reversed_chain(3);
        upserts.insert(0, upsert("lost", Some("nowhere")));
        upserts.push(upsert("refused", None));
        let writes = then_delete_gone(upserts);
        let mut memory = Memory::default();
        let report = apply(&mut memory, &writes, &NoProgress).await;
        assert_eq!(report.upserted.len(), 3);
        let rejected: Vec<(&str, &str)> = report
            .rejected
            .iter()
            .map(|r| (r.key.identifier.as_str(), r.message.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [("lost", "nowhere not found"), ("refused", "refused")]
        );
        // Three passes write the chain; the fourth writes nothing and ends the retries. The
        // refusals are in the order of the writes, not the order they were settled in.
        assert_eq!(memory.upsert_calls, 4);
        assert_eq!(report.deleted, [EntityKey::new("bucket", "gone")]);
    }

    #[tokio::test]
    async fn a_stop_on_request_keeps_what_was_written_and_sends_nothing_more() {
        let writes = then_delete_gone(reversed_chain(5));
        let mut memory = Memory::default();
        // Asked before each pass: the third question comes after b1 and b2 are written.
        let report = apply(&mut memory, &writes, &StopAt(AtomicUsize::new(0), 3)).await;
        assert_eq!(report.stopped, Some(Stop::OnRequest));
        assert_eq!(
            report.upserted,
            [
                EntityKey::new("bucket", "b1"),
                EntityKey::new("bucket", "b2")
            ]
        );
        assert_eq!(memory.delete_calls, 0);
    }

    #[tokio::test]
    async fn a_failed_upsert_step_deletes_nothing() {
        let writes = then_delete_gone(reversed_chain(2));
        let mut memory = Memory {
            fail_at: Some(2),
            ..Memory::default()
        };
        let report = apply(&mut memory, &writes, &NoProgress).await;
        assert_eq!(
            report.stopped,
            Some(Stop::Failed("the catalog is down".into()))
        );
        assert_eq!(report.upserted, [EntityKey::new("bucket", "b1")]);
        assert!(report.deleted.is_empty());
        assert_eq!(memory.delete_calls, 0);
        assert_eq!(report.write_requests, 1);
    }

    #[test]
    fn stages_keep_first_appearance_order() {
        let s = stages(vec!["b1", "a1", "b2", "c1", "a2"], |x| x[..1].to_string());
        assert_eq!(
            s,
            vec![
                ("b".to_string(), vec!["b1", "b2"]),
                ("a".to_string(), vec!["a1", "a2"]),
                ("c".to_string(), vec!["c1"])
            ]
        );
    }
}
