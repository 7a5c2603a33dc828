//! Prometheus metrics for `/metrics`. Labels are bounded: kinds come from the mappings, statuses
//! and outcomes are fixed sets, and accounts are counted by status, never one series per account,
//! so an organisation of thousands of accounts stays a few dozen series. Requests to AWS and Port
//! are labelled by service, operation and outcome, which the adapters draw from fixed sets.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::adapters::requests::RequestCount;
use crate::core::model::EntityKey;
use crate::core::reconcile::Plan;
use crate::core::reconcile::plan::{AccountStatus, Action};
use crate::core::shard::Shard;
use crate::core::writes::ApplyReport;
use crate::engine::Collected;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub mode: String,
    pub outcome: String,
}

/// How a reload ended (`tidemark_config_reloads_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new config became the running one.
    Ok,
    Unchanged,
    /// The files do not load, or the new mappings fail items the running ones map.
    Invalid,
    /// A section changed that needs a restart.
    Rejected,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Ok => "ok",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Invalid => "invalid",
            ReloadOutcome::Rejected => "rejected",
        }
    }
}

/// How a sync ended (`tidemark_syncs_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Ok,
    /// Applied, with scopes, accounts or items incomplete.
    Partial,
    Failed,
}

impl SyncOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Ok => "ok",
            SyncOutcome::Partial => "partial",
            SyncOutcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindActionLabels {
    pub kind: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// An AWS API operation (`service` = `cloudcontrol`, `account`, `sts`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsOperationLabels {
    pub service: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsRequestLabels {
    pub service: String,
    pub operation: String,
    pub outcome: String,
}

/// A kind of Port request: `read`, `write`, `auth`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortOperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortRequestLabels {
    pub operation: String,
    pub outcome: String,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub syncs: Family<SyncLabels, Counter>,
    pub sync_duration: Histogram,
    pub last_success: Gauge<f64, AtomicU64>,
    pub listed: Family<KindLabels, Gauge>,
    pub source_listings: Counter,
    pub entities: Family<KindActionLabels, Counter>,
    pub withheld: Family<KindLabels, Gauge>,
    pub accounts: Family<StatusLabels, Gauge>,
    pub scopes_failed: Gauge,
    pub mapping_errors: Gauge,
    pub discovery_complete: Gauge,
    pub write_requests: Counter,
    pub writes_rejected: Counter,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub config_ok: Gauge,
    pub cache_bytes: Gauge,
    pub cache_items: Gauge,
    pub aws_requests: Family<AwsRequestLabels, Counter>,
    pub aws_retries: Family<AwsOperationLabels, Counter>,
    pub port_requests: Family<PortRequestLabels, Counter>,
    pub port_retries: Family<PortOperationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::for_shard(None)
    }

    /// Every series labelled `shard` and `shard_count` when the daemon runs as one shard of
    /// several, so that one dashboard sums the replicas and still tells them apart.
    pub fn for_shard(shard: Option<Shard>) -> Metrics {
        let labels = shard.into_iter().flat_map(|s| {
            [
                (Cow::Borrowed("shard"), Cow::Owned(s.index.to_string())),
                (
                    Cow::Borrowed("shard_count"),
                    Cow::Owned(s.count.to_string()),
                ),
            ]
        });
        let mut registry = Registry::with_prefix_and_labels("tidemark", labels);
        let m = Metrics {
            registry: Registry::default(),
            syncs: Family::default(),
            // 50 ms .. ~7 min: a re-map of a few items up to a full listing of a large organisation.
            sync_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            last_success: Gauge::default(),
            listed: Family::default(),
            source_listings: Counter::default(),
            entities: Family::default(),
            withheld: Family::default(),
            accounts: Family::default(),
            scopes_failed: Gauge::default(),
            mapping_errors: Gauge::default(),
            discovery_complete: Gauge::default(),
            write_requests: Counter::default(),
            writes_rejected: Counter::default(),
            reloads: Family::default(),
            config_ok: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_items: Gauge::default(),
            aws_requests: Family::default(),
            aws_retries: Family::default(),
            port_requests: Family::default(),
            port_retries: Family::default(),
        };
        m.register_sync_metrics(&mut registry);
        m.register_daemon_metrics(&mut registry);
        Metrics { registry, ..m }
    }

    /// What the last sync listed, mapped, planned and found incomplete.
    fn register_sync_metrics(&self, registry: &mut Registry) {
        registry.register(
            "syncs",
            "Syncs by mode (full, remap) and outcome (ok, partial, failed)",
            self.syncs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of syncs",
            self.sync_duration.clone(),
        );
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time when the last sync ended ok or partial",
            self.last_success.clone(),
        );
        registry.register(
            "resources_listed",
            "Raw items in the last sync, per kind",
            self.listed.clone(),
        );
        registry.register(
            "source_listings",
            "Full listings from the source (a re-map lists nothing)",
            self.source_listings.clone(),
        );
        registry.register(
            "entities",
            "Entity writes the catalog confirmed, per kind and action (created, updated, deleted)",
            self.entities.clone(),
        );
        registry.register(
            "entities_withheld",
            "Changes withheld by the last sync, per kind",
            self.withheld.clone(),
        );
        registry.register(
            "accounts",
            "Accounts in the last sync, by status (scopes_failed: assumed, but some listing failed)",
            self.accounts.clone(),
        );
        registry.register(
            "scopes_failed",
            "Failed (account, region, kind) listings in the last sync",
            self.scopes_failed.clone(),
        );
        registry.register(
            "mapping_errors",
            "Items skipped by a mapping error in the last sync",
            self.mapping_errors.clone(),
        );
        registry.register(
            "discovery_complete",
            "1 when the last account discovery was complete",
            self.discovery_complete.clone(),
        );
    }

    /// Catalog writes, reloads, the re-map cache and the requests sent to AWS and Port.
    fn register_daemon_metrics(&self, registry: &mut Registry) {
        registry.register(
            "catalog_write_requests",
            "Write requests sent to the catalog",
            self.write_requests.clone(),
        );
        registry.register(
            "catalog_writes_rejected",
            "Writes the catalog refused",
            self.writes_rejected.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by outcome (ok, unchanged, invalid, rejected)",
            self.reloads.clone(),
        );
        registry.register(
            "config_ok",
            "1 when the last config load was valid and applied",
            self.config_ok.clone(),
        );
        registry.register(
            "cache_bytes",
            "Approximate size of the raw items kept for re-mapping",
            self.cache_bytes.clone(),
        );
        registry.register(
            "cache_items",
            "Raw items kept for re-mapping",
            self.cache_items.clone(),
        );
        registry.register(
            "aws_requests",
            "Requests sent to AWS, retries included, by service, operation and outcome (ok, throttled, failed)",
            self.aws_requests.clone(),
        );
        registry.register(
            "aws_retries",
            "Requests to AWS sent again after throttling or a transient failure, by service and operation",
            self.aws_retries.clone(),
        );
        registry.register(
            "port_requests",
            "Requests sent to Port, retries included, by operation (read, write, auth) and outcome (ok, throttled, failed)",
            self.port_requests.clone(),
        );
        registry.register(
            "port_retries",
            "Requests to Port sent again after throttling or a transient failure, by operation",
            self.port_retries.clone(),
        );
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reload(&self, outcome: ReloadOutcome) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    pub fn sync(&self, mode: &str, outcome: SyncOutcome, seconds: f64) {
        let outcome = outcome.as_str();
        self.syncs
            .get_or_create(&SyncLabels {
                mode: mode.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.sync_duration.observe(seconds);
    }

    /// Adds the requests a source sent to AWS since they were last taken.
    pub fn record_aws_requests(&self, counts: &[RequestCount]) {
        for c in counts {
            for (outcome, n) in outcomes(c) {
                self.aws_requests
                    .get_or_create(&AwsRequestLabels {
                        service: c.service.into(),
                        operation: c.operation.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }
            // Created at zero too, so `rate()` has a series from the first request on.
            self.aws_retries
                .get_or_create(&AwsOperationLabels {
                    service: c.service.into(),
                    operation: c.operation.into(),
                })
                .inc_by(c.retries);
        }
    }

    /// Adds the requests a catalog sent to Port since they were last taken.
    pub fn record_port_requests(&self, counts: &[RequestCount]) {
        for c in counts {
            for (outcome, n) in outcomes(c) {
                self.port_requests
                    .get_or_create(&PortRequestLabels {
                        operation: c.operation.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }
            self.port_retries
                .get_or_create(&PortOperationLabels {
                    operation: c.operation.into(),
                })
                .inc_by(c.retries);
        }
    }

    /// Records what one sync saw and wrote.
    pub fn record(&self, collected: &Collected, plan: &Plan, report: Option<&ApplyReport>) {
        self.listed.clear();
        for (kind, n) in &collected.listed {
            self.listed
                .get_or_create(&KindLabels { kind: kind.clone() })
                .set(to_i64(*n));
        }
        self.withheld.clear();
        let mut withheld: BTreeMap<String, usize> = BTreeMap::new();
        for w in &plan.withheld {
            *withheld.entry(kind_label(w.kind.as_deref())).or_default() += 1;
        }
        for (kind, n) in withheld {
            self.withheld
                .get_or_create(&KindLabels { kind })
                .set(to_i64(n));
        }
        self.accounts.clear();
        for status in [
            "ok",
            "scopes_failed",
            "unassumable",
            "regions_failed",
            "gone",
        ] {
            // Every status is exported, zero included, so alerts need no `absent()`.
            self.accounts
                .get_or_create(&StatusLabels {
                    status: status.into(),
                })
                .set(0);
        }
        // An assumed account can still have listings that failed; it is not "ok" then. The
        // labels stay a fixed set: which scopes failed is in the logs and the plan.
        let failed: BTreeSet<&str> = plan.scopes.iter().map(|s| s.account.as_str()).collect();
        for a in &plan.accounts {
            let status = match a.status {
                AccountStatus::Ok if failed.contains(a.id.as_str()) => "scopes_failed",
                AccountStatus::Ok => "ok",
                AccountStatus::Unassumable => "unassumable",
                AccountStatus::RegionsFailed => "regions_failed",
                AccountStatus::Gone => "gone",
            };
            self.accounts
                .get_or_create(&StatusLabels {
                    status: status.into(),
                })
                .inc();
        }
        self.scopes_failed.set(to_i64(plan.scopes.len()));
        self.mapping_errors.set(to_i64(plan.mapping_errors.len()));
        self.discovery_complete
            .set(i64::from(plan.discovery.is_complete()));
        let Some(report) = report else { return };
        self.write_requests.inc_by(report.write_requests as u64);
        self.writes_rejected.inc_by(report.rejected.len() as u64);
        let upserted: BTreeSet<&EntityKey> = report.upserted.iter().collect();
        let deleted: BTreeSet<&EntityKey> = report.deleted.iter().collect();
        for change in &plan.changes {
            let key = change.key();
            let action = match change.action {
                Action::Create if upserted.contains(&key) => "created",
                Action::Update if upserted.contains(&key) => "updated",
                Action::Delete if deleted.contains(&key) => "deleted",
                _ => continue,
            };
            self.entities
                .get_or_create(&KindActionLabels {
                    kind: kind_label(change.kind.as_deref()),
                    action: action.into(),
                })
                .inc();
        }
    }
}

/// The outcomes that happened, with their counts; outcomes that did not are left out rather than
/// exported as zero series.
fn outcomes(c: &RequestCount) -> impl Iterator<Item = (&'static str, u64)> {
    [
        ("ok", c.ok),
        ("throttled", c.throttled),
        ("failed", c.failed),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
}

/// Entities whose kind is unknown (created as missing relation targets, adopted) share one label.
fn kind_label(kind: Option<&str>) -> String {
    kind.unwrap_or("unknown").to_string()
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_their_prefix_and_labels() {
        let m = Metrics::new();
        m.reload(ReloadOutcome::Invalid);
        m.sync("remap", SyncOutcome::Ok, 0.2);
        m.config_ok.set(1);
        let text = m.encode();
        assert!(
            text.contains("tidemark_config_reloads_total{outcome=\"invalid\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tidemark_syncs_total{mode=\"remap\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tidemark_sync_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("tidemark_config_ok 1"), "{text}");
    }

    fn count(service: &'static str, operation: &'static str) -> RequestCount {
        RequestCount {
            service,
            operation,
            ..RequestCount::default()
        }
    }

    #[test]
    fn aws_and_port_requests_add_up_across_syncs_by_operation_and_outcome() {
        let m = Metrics::new();
        m.record_aws_requests(&[RequestCount {
            ok: 4,
            throttled: 2,
            retries: 2,
            ..count("cloudcontrol", "ListResources")
        }]);
        m.record_aws_requests(&[
            RequestCount {
                ok: 1,
                throttled: 1,
                retries: 1,
                ..count("cloudcontrol", "ListResources")
            },
            RequestCount {
                ok: 1,
                ..count("account", "ListRegions")
            },
        ]);
        m.record_port_requests(&[
            RequestCount {
                ok: 3,
                failed: 1,
                retries: 1,
                ..count("port", "write")
            },
            RequestCount {
                ok: 1,
                ..count("port", "auth")
            },
        ]);
        let text = m.encode();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        };
        has(
            r#"tidemark_aws_requests_total{service="cloudcontrol",operation="ListResources",outcome="ok"} 5"#,
        );
        has(
            r#"tidemark_aws_requests_total{service="cloudcontrol",operation="ListResources",outcome="throttled"} 3"#,
        );
        has(r#"tidemark_aws_retries_total{service="cloudcontrol",operation="ListResources"} 3"#);
        has(
            r#"tidemark_aws_requests_total{service="account",operation="ListRegions",outcome="ok"} 1"#,
        );
        has(r#"tidemark_aws_retries_total{service="account",operation="ListRegions"} 0"#);
        has(r#"tidemark_port_requests_total{operation="write",outcome="ok"} 3"#);
        has(r#"tidemark_port_requests_total{operation="write",outcome="failed"} 1"#);
        has(r#"tidemark_port_retries_total{operation="write"} 1"#);
        has(r#"tidemark_port_requests_total{operation="auth",outcome="ok"} 1"#);
        has("# TYPE tidemark_aws_requests counter");
        has("# TYPE tidemark_port_retries counter");
        // Outcomes that never happened export no series.
        assert!(
            !text.contains(r#"operation="ListRegions",outcome="failed""#),
            "{text}"
        );
        assert!(
            !text.contains(r#"operation="auth",outcome="throttled""#),
            "{text}"
        );
    }

    #[test]
    fn a_sharded_daemon_labels_every_series_with_its_shard() {
        let m = Metrics::for_shard(Some(Shard { index: 2, count: 4 }));
        m.reload(ReloadOutcome::Ok);
        m.config_ok.set(1);
        let text = m.encode();
        for line in text.lines().filter(|l| l.starts_with("tidemark_")) {
            assert!(
                line.contains(r#"shard="2""#) && line.contains(r#"shard_count="4""#),
                "{line}"
            );
        }
        assert!(text.contains("tidemark_config_ok"), "{text}");
        assert!(!Metrics::new().encode().contains("shard="));
    }
}
