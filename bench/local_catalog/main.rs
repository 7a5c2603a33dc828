//! Times the local catalog with 20,000 entities: applies (create, identical update, delete),
//! `owned`, `foreign` and `foreign_references`, wall clock and process CPU time.

// The modules are compiled from tidemark's sources so this release build stays small: the
// local catalog adapter and the parts of the core it reads, in the same module tree as in
// tidemark, without the AWS SDK.
#[allow(dead_code)]
#[path = "../../src/core"]
mod core {
    pub mod model;
    pub mod query;
    pub mod secret;
    pub mod validate;
    pub mod writes;
}
#[allow(dead_code)]
#[path = "../../src/adapters"]
mod adapters {
    mod apply;
    mod catalog;
    pub mod local;
    pub mod requests;
    pub use catalog::*;
}

use std::time::{Duration, Instant};

use adapters::Catalog;
use adapters::local::LocalCatalog;
use crate::core::writes::{BlueprintChange, Delete, NoProgress, Upsert, Writes};
use crate::core::model::{Blueprint, Entity, EntityKey, WriteOptions};
use serde_json::json;

const OWNER: &str = "aws-prod";
const N: usize = 20_000;
const ACCOUNTS: usize = 50;

/// User plus system CPU time of this process so far, from /proc (Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 (utime, stime) counted from after the command name; 100 ticks a second
    // on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn measure<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let out = f();
    println!(
        "| {label} | {:.0} ms | {:.0} ms |",
        wall.elapsed().as_secs_f64() * 1000.0,
        (cpu_time() - cpu).as_secs_f64() * 1000.0
    );
    out
}

fn bucket(i: usize) -> Entity {
    serde_json::from_value(json!({
        "blueprint": "bucket", "identifier": format!("arn:aws:s3:::bucket-{i}"),
        "title": format!("bucket-{i}"), "icon": "Bucket", "team": [],
        "properties": {"region": "us-east-1", "size": i, "versioning": "Enabled",
                       "arn": format!("arn:aws:s3:::bucket-{i}"),
                       "tags": {"env": "prod", "owner": "team-a", "cost-center": "1234"}},
        "relations": {"account": format!("{:012}", i % ACCOUNTS)}
    }))
    .expect("entity")
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = LocalCatalog::open(&dir.path().join("catalog.db")).expect("open");
    let blueprints = [
        json!({"identifier": "awsAccount", "schema": {"properties": {}}, "relations": {}}),
        json!({"identifier": "bucket", "schema": {"properties": {
            "region": {"type": "string"}, "size": {"type": "number"}, "versioning": {"type": "string"},
            "arn": {"type": "string"}, "tags": {"type": "object"}}},
            "relations": {"account": {"target": "awsAccount", "many": false}}}),
    ];
    let upserts: Vec<Upsert> = (0..N)
        .map(|i| Upsert {
            entity: bucket(i),
            account: format!("{:012}", i % ACCOUNTS),
            kind: "AWS::S3::Bucket".into(),
            write: WriteOptions::default(),
        })
        .collect();
    let keys: Vec<EntityKey> = upserts.iter().map(|u| u.entity.key()).collect();
    let writes = Writes {
        blueprints: blueprints
            .into_iter()
            .map(|b| BlueprintChange::Create {
                identifier: b["identifier"].as_str().unwrap_or_default().into(),
                definition: Blueprint(b),
            })
            .collect(),
        upserts,
        deletes: vec![],
    };
    println!("| {N} entities | wall | CPU |\n|---|---|---|");
    {
        let report = measure("apply: create (with 50 placeholder accounts)", || {
            runtime.block_on(catalog.apply(OWNER, &writes, &NoProgress))
        });
        assert_eq!(report.upserted.len(), N);
        let report = measure("apply: identical upserts", || {
            runtime.block_on(catalog.apply(OWNER, &writes, &NoProgress))
        });
        assert_eq!(report.upserted.len(), N);
        let runs: usize = std::env::var("OWNED_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        for run in 1..=runs {
            let owned = measure(&format!("owned (run {run})"), || {
                runtime.block_on(catalog.owned(OWNER, &[]))
            })
            .expect("owned");
            assert_eq!(owned.len(), N + ACCOUNTS);
        }
        let texts: Vec<String> = writes
            .upserts
            .iter()
            .map(|u| serde_json::to_string(&u.entity).expect("json"))
            .collect();
        measure("baseline: parse 20k entity texts", || {
            texts
                .iter()
                .map(|t| serde_json::from_str::<Entity>(t).expect("parse"))
                .count()
        });
        measure("foreign over all keys", || {
            runtime.block_on(catalog.foreign(OWNER, &keys))
        })
        .expect("foreign");
        measure("foreign_references over all keys", || {
            runtime.block_on(catalog.foreign_references(OWNER, &keys))
        })
        .expect("references");
        let deletes = Writes {
            deletes: keys
                .iter()
                .map(|k| Delete {
                    key: k.clone(),
                    account: None,
                })
                .collect(),
            ..Writes::default()
        };
        let report = measure("apply: delete", || {
            runtime.block_on(catalog.apply(OWNER, &deletes, &NoProgress))
        });
        assert_eq!(report.deleted.len(), N);
    }
}
