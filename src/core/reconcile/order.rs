//! Blueprint relation order: relation targets before the blueprints that point at them, so creates
//! find their targets and deletes (in reverse) remove dependents first. Cycles are broken
//! deterministically; the catalog retries after a missing-target error for those.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::model::Blueprint;

pub struct BlueprintOrder {
    rank: BTreeMap<String, usize>,
}

impl BlueprintOrder {
    pub fn new(blueprints: &[Blueprint]) -> BlueprintOrder {
        // blueprint → the blueprints it relates to (its targets), self-relations ignored
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in blueprints {
            let id = b.identifier().to_string();
            let targets = b
                .relations()
                .into_iter()
                .map(|r| r.target)
                .filter(|t| *t != id)
                .collect();
            deps.insert(id, targets);
        }
        let mut rank = BTreeMap::new();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        while placed.len() < deps.len() {
            // Every blueprint whose targets are all placed (or unknown) goes next, alphabetically;
            // on a cycle, the alphabetically first unplaced one breaks it.
            let ready: Vec<String> = deps
                .iter()
                .filter(|(id, _)| !placed.contains(*id))
                .filter(|(_, targets)| {
                    targets
                        .iter()
                        .all(|t| placed.contains(t) || !deps.contains_key(t))
                })
                .map(|(id, _)| id.clone())
                .collect();
            let next = if ready.is_empty() {
                deps.keys()
                    .find(|id| !placed.contains(*id))
                    .cloned()
                    .into_iter()
                    .collect()
            } else {
                ready
            };
            for id in next {
                rank.insert(id.clone(), rank.len());
                placed.insert(id);
            }
        }
        BlueprintOrder { rank }
    }

    /// Position in the order; unknown blueprints go last.
    pub fn rank(&self, blueprint: &str) -> usize {
        self.rank.get(blueprint).copied().unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bp(id: &str, targets: &[&str]) -> Blueprint {
        let rels: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|t| {
                (
                    format!("to_{t}"),
                    json!({"target": t, "many": false, "required": false}),
                )
            })
            .collect();
        Blueprint(json!({"identifier": id, "title": id, "relations": rels}))
    }

    #[test]
    fn relation_targets_come_first() {
        let order = BlueprintOrder::new(&[
            bp("service", &["cluster"]),
            bp("cluster", &["account"]),
            bp("account", &[]),
        ]);
        assert!(order.rank("account") < order.rank("cluster"));
        assert!(order.rank("cluster") < order.rank("service"));
        assert_eq!(order.rank("unknown"), usize::MAX);
    }

    #[test]
    fn cycles_still_give_a_total_order() {
        let order = BlueprintOrder::new(&[bp("a", &["b"]), bp("b", &["a"]), bp("c", &["a"])]);
        let mut ranks = vec![order.rank("a"), order.rank("b"), order.rank("c")];
        ranks.sort();
        ranks.dedup();
        assert_eq!(ranks.len(), 3);
        assert!(order.rank("c") > order.rank("a"));
    }
}
