//! Counters of the requests that adapters send to remote APIs (AWS, Port), for `/metrics`.
//!
//! An adapter keeps one [`RequestCounter`] and records every attempt it sends, with its outcome,
//! and every retry it schedules; the daemon [takes](RequestCounter::take) the counts after each
//! sync and adds them to its Prometheus counters. Services and operations are fixed names chosen
//! by the adapters (never an account id, region or URL), so the label sets stay a handful however
//! large the organisation.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer the adapter accepted.
    Ok,
    /// The service said to slow down (HTTP 429, a throttling error code).
    Throttled,
    /// Anything else: an error answer, a server error, no answer at all.
    Failed,
}

/// Attempts and retries of one operation since the counts were last taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCount {
    /// `cloudcontrol`, `account`, `sts`; `port` for the Port catalog.
    pub service: &'static str,
    /// `ListResources`, `GetResource`, `ListRegions`, `AssumeRole`; `read`, `write`, `auth`.
    pub operation: &'static str,
    pub ok: u64,
    pub throttled: u64,
    pub failed: u64,
    /// Attempts that repeated a throttled or failed one. They are also counted in the outcomes
    /// above, since every attempt is a request the service sees.
    pub retries: u64,
}

impl RequestCount {
    /// Every attempt, retries included.
    pub fn requests(&self) -> u64 {
        self.ok + self.throttled + self.failed
    }
}

/// Shared by every task of one adapter; a short lock per attempt, never held across an await.
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<(&'static str, &'static str), RequestCount>>,
}

impl RequestCounter {
    pub fn new() -> RequestCounter {
        RequestCounter::default()
    }

    /// Records one attempt sent to `service`'s `operation`.
    pub fn attempt(&self, service: &'static str, operation: &'static str, outcome: Outcome) {
        self.update(service, operation, |c| match outcome {
            Outcome::Ok => c.ok += 1,
            Outcome::Throttled => c.throttled += 1,
            Outcome::Failed => c.failed += 1,
        });
    }

    /// Records that a throttled or failed attempt will be sent again.
    pub fn retry(&self, service: &'static str, operation: &'static str) {
        self.update(service, operation, |c| c.retries += 1);
    }

    /// The counts since the last call, in (service, operation) order, and starts again from zero.
    /// Only one reader (the daemon) takes them, so nothing is counted twice or lost.
    pub fn take(&self) -> Vec<RequestCount> {
        match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts).into_values().collect(),
            Err(_) => Vec::new(),
        }
    }

    fn update(
        &self,
        service: &'static str,
        operation: &'static str,
        change: impl FnOnce(&mut RequestCount),
    ) {
        // A poisoned lock only means a panic elsewhere mid-update; counting is best effort.
        if let Ok(mut counts) = self.counts.lock() {
            let count = counts
                .entry((service, operation))
                .or_insert_with(|| RequestCount {
                    service,
                    operation,
                    ..RequestCount::default()
                });
            change(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_retries_are_counted_per_operation_and_taken_once() {
        let counter = RequestCounter::new();
        counter.attempt("cloudcontrol", "ListResources", Outcome::Throttled);
        counter.retry("cloudcontrol", "ListResources");
        counter.attempt("cloudcontrol", "ListResources", Outcome::Ok);
        counter.attempt("account", "ListRegions", Outcome::Failed);
        let taken = counter.take();
        assert_eq!(
            taken,
            vec![
                RequestCount {
                    service: "account",
                    operation: "ListRegions",
                    failed: 1,
                    ..RequestCount::default()
                },
                RequestCount {
                    service: "cloudcontrol",
                    operation: "ListResources",
                    ok: 1,
                    throttled: 1,
                    retries: 1,
                    ..RequestCount::default()
                },
            ]
        );
        assert_eq!(taken[1].requests(), 2);
        assert_eq!(counter.take(), Vec::new());
    }
}
