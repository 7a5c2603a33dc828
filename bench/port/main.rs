//! Port requests and wall time for a first sync of 10,000 entities and a no-op resync, through
//! the library API against the Port stand-in with 20 ms latency per request.
//!
//! Run: `cargo bench --bench port` (figures in BENCHMARKS.md). The sync steps the core will
//! drive (owned → foreign check of creates → apply; owned → diff → nothing to write) are played
//! here by hand until the CLI is wired to the Port catalog.

#[path = "../../tests/support/port_standin/mod.rs"]
mod port_standin;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use port_standin::PortStandIn;
use tidemark::adapters::Catalog;
use tidemark::adapters::port::{PortCatalog, PortOptions};
use tidemark::core::model::{Blueprint, Entity, EntityKey, WriteOptions};
use tidemark::core::writes::{BlueprintChange, NoProgress, Upsert, Writes};

const OWNER: &str = "aws-bench";
const ACCOUNTS: usize = 10;
const KINDS: [&str; 3] = ["awsS3Bucket", "awsLambdaFunction", "awsEc2Instance"];
/// 10 accounts × 3 kinds × 333 + 10 account entities = 10,000 entities.
const PER_KIND_AND_ACCOUNT: usize = 333;
const LATENCY: Duration = Duration::from_millis(20);

fn blueprints() -> Vec<BlueprintChange> {
    let mut changes = vec![BlueprintChange::Create {
        identifier: "awsAccount".into(),
        definition: Blueprint(json!({"identifier": "awsAccount", "title": "Account",
            "schema": {"properties": {"name": {"type": "string"}}}, "relations": {}})),
    }];
    for kind in KINDS {
        changes.push(BlueprintChange::Create {
            identifier: kind.into(),
            definition: Blueprint(json!({"identifier": kind, "title": kind,
                "schema": {"properties": {"region": {"type": "string"}, "arn": {"type": "string"},
                                          "tags": {"type": "object"}}},
                "relations": {"account": {"target": "awsAccount", "many": false, "required": false}}})),
        });
    }
    changes
}

fn desired() -> Vec<Upsert> {
    let mut upserts = Vec::new();
    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|i| format!("{:012}", 100_000_000_000u64 + i as u64))
        .collect();
    for account in &accounts {
        let mut e = Entity::new("awsAccount", account);
        e.title = Some(json!(account));
        e.properties = json!({"name": format!("acct-{account}")})
            .as_object()
            .cloned();
        upserts.push(Upsert {
            entity: e,
            account: account.clone(),
            kind: "AWS::Account::Info".into(),
            write: WriteOptions::default(),
        });
    }
    for account in &accounts {
        for kind in KINDS {
            for i in 0..PER_KIND_AND_ACCOUNT {
                let id = format!("arn:aws:{kind}:us-east-1:{account}:res/{i}");
                let mut e = Entity::new(kind, &id);
                e.title = Some(json!(format!("res-{i}")));
                e.properties =
                    json!({"region": "us-east-1", "arn": id, "tags": {"team": "core", "n": i}})
                        .as_object()
                        .cloned();
                e.relations = json!({"account": account}).as_object().cloned();
                upserts.push(Upsert {
                    entity: e,
                    account: account.clone(),
                    kind: kind.into(),
                    write: WriteOptions::default(),
                });
            }
        }
    }
    upserts
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let standin = PortStandIn::start().await;
    standin.faults(|f| f.latency = LATENCY);
    let catalog = PortCatalog::with_options(standin.config(), OWNER, PortOptions::default())
        .expect("catalog");
    let upserts = desired();
    let accounts: Vec<String> = upserts
        .iter()
        .filter(|u| u.entity.blueprint == "awsAccount")
        .map(|u| u.account.clone())
        .collect();
    let n = upserts.len();

    // First sync: nothing owned yet, every entity is a create checked for foreign owners.
    let started = Instant::now();
    let owned = catalog.owned(OWNER, &accounts).await.expect("owned");
    assert!(owned.is_empty());
    let keys: Vec<EntityKey> = upserts.iter().map(|u| u.entity.key()).collect();
    let foreign = catalog.foreign(OWNER, &keys).await.expect("foreign");
    assert!(foreign.is_empty());
    let writes = Writes {
        blueprints: blueprints(),
        upserts: upserts.clone(),
        deletes: Vec::new(),
    };
    let report = catalog.apply(OWNER, &writes, &NoProgress).await;
    let first_time = started.elapsed();
    assert_eq!(report.stopped, None);
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted.len(), n);
    let first = standin.counters();

    let mut per_group: HashMap<(String, String), usize> = HashMap::new();
    for u in &upserts {
        *per_group
            .entry((u.entity.blueprint.clone(), u.account.clone()))
            .or_default() += 1;
    }
    let target =
        writes.blueprints.len() + per_group.values().map(|c| c.div_ceil(20)).sum::<usize>();

    // No-op resync: owned state equals the desired state, so the core sends no writes.
    standin.reset_counters();
    let started = Instant::now();
    let owned = catalog.owned(OWNER, &accounts).await.expect("owned");
    let by_key: HashMap<EntityKey, &Entity> =
        owned.iter().map(|o| (o.entity.key(), &o.entity)).collect();
    let changed: Vec<Upsert> = upserts
        .iter()
        .filter(|u| {
            by_key
                .get(&u.entity.key())
                .is_none_or(|cur| **cur != u.entity)
        })
        .cloned()
        .collect();
    let report = catalog
        .apply(
            OWNER,
            &Writes {
                upserts: changed.clone(),
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    let noop_time = started.elapsed();
    let noop = standin.counters();
    assert_eq!(
        changed.len(),
        0,
        "owned state read back differs from what was written"
    );
    assert_eq!(report.write_requests, 0);

    println!(
        "entities: {n} ({ACCOUNTS} accounts, {} blueprints), stand-in latency {} ms",
        KINDS.len() + 1,
        LATENCY.as_millis()
    );
    println!(
        "first sync: {} write requests (target <= {target}), {} read requests, {} token requests, {:.2} s",
        first.writes,
        first.reads,
        first.auth,
        first_time.as_secs_f64()
    );
    println!(
        "no-op resync: {} write requests, {} read requests, {:.2} s",
        noop.writes,
        noop.reads,
        noop_time.as_secs_f64()
    );
    assert!(
        first.writes <= target,
        "first sync used {} writes, target {target}",
        first.writes
    );
}
