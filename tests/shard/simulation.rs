//! Issue 19's simulation: an organisation of many accounts × 4 regions × 20 kinds in the STS,
//! Organizations and Cloud Control stand-ins (pages of 25, 20 ms per call) synced into the Port
//! stand-in (20 ms per request) by one process and by several shards at once. Ignored by default;
//! `bench/shard/run.sh` runs it and BENCHMARKS.md records its figures.
//!
//! Sizes come from the environment: `SIM_ACCOUNTS` (1000), `SIM_ITEMS` per (account, region,
//! kind) (2), `SIM_SHARDS` (4), `SIM_RUNS` (the replica counts to run, `1,4`),
//! `SIM_CONCURRENCY` (`concurrency.accounts`, 20), `SIM_BIN` (the tidemark binary; default the
//! test build's).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::support::aws_stand_ins::AwsStandIns;
use super::support::cli::{BIN, Workspace};
use super::support::port_standin::PortStandIn;

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
const KINDS: usize = 20;
const LATENCY: Duration = Duration::from_millis(20);
const PAGE: usize = 25;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kind(k: usize) -> String {
    format!("AWS::Sim::Kind{k:02}")
}

/// One replica's run: wall time and peak resident memory.
struct Replica {
    seconds: f64,
    max_rss_mib: f64,
    exit: i32,
}

#[test]
#[ignore = "a benchmark: bench/shard/run.sh"]
fn bench_simulation() {
    let accounts = env_or("SIM_ACCOUNTS", 1000);
    let items = env_or("SIM_ITEMS", 2);
    let shards = env_or("SIM_SHARDS", 4) as u32;
    let concurrency = env_or("SIM_CONCURRENCY", 20);
    let bin = std::env::var("SIM_BIN").unwrap_or_else(|_| BIN.to_string());

    let aws = AwsStandIns::start("AKIATIDEMARKSIMULATE", "simulation-secret");
    let (sts, cc) = (&aws.sts, &aws.cc);
    sts.set_latency(LATENCY);
    cc.set_latency(LATENCY);
    cc.set_page_size(PAGE);
    let members: Vec<String> = (0..accounts as u64)
        .map(|i| format!("{:012}", 300_000_000_000 + i * 7_919))
        .collect();
    let ids: Vec<&str> = members.iter().map(String::as_str).collect();
    cc.serve_organization_of(&ids);
    for account in &members {
        for region in REGIONS {
            for k in 0..KINDS {
                for i in 0..items {
                    let id = format!("r{k:02}-{i}");
                    cc.add(
                        account,
                        region,
                        &kind(k),
                        &id,
                        json!({"Arn": format!("arn:aws:sim:{region}:{account}:k{k:02}/{id}"),
                               "Name": id, "Size": i}),
                    );
                }
            }
        }
    }

    let ws = Workspace::new();
    let mut mapping = String::from(
        "resources:\n  - kind: AWS::Account::Info\n    port:\n      entity:\n        mappings:\n          identifier: .Properties.Id\n          title: .Properties.Name\n          blueprint: '\"simAccount\"'\n",
    );
    let mut blueprints = vec![json!({"identifier": "simAccount", "title": "Account",
        "schema": {"properties": {}}, "relations": {}})];
    for k in 0..KINDS {
        mapping.push_str(&format!(
            "  - kind: {}\n    port:\n      entity:\n        mappings:\n          identifier: .Properties.Arn\n          title: .Properties.Name\n          blueprint: '\"simKind{k:02}\"'\n          properties:\n            region: .__Region\n            size: .Properties.Size\n          relations:\n            account: .__AccountId\n",
            kind(k)
        ));
        blueprints.push(
            json!({"identifier": format!("simKind{k:02}"), "title": kind(k),
            "schema": {"properties": {"region": {"type": "string"}, "size": {"type": "number"}}},
            "relations": {"account": {"target": "simAccount", "many": false, "required": false}}}),
        );
    }
    ws.write("mappings/sim.yaml", &mapping);
    ws.write(
        "mappings/blueprints.json",
        &serde_json::to_string(&blueprints).expect("json"),
    );

    println!(
        "BENCH simulation: {accounts} accounts x {} regions x {KINDS} kinds x {items} items, pages of {PAGE}, {} ms latency, concurrency.accounts {concurrency}",
        REGIONS.len(),
        LATENCY.as_millis()
    );
    // SIM_RUNS: which replica counts to run, e.g. "1,4" (default: 1 and SIM_SHARDS).
    let runs: Vec<u32> = std::env::var("SIM_RUNS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, shards]);
    for count in runs {
        let port = PortStandIn::start_in_thread();
        port.faults(|f| f.latency = LATENCY);
        let secret = ws.path(&format!("port-{count}.secret"));
        std::fs::write(&secret, port.config().client_secret.expose()).expect("secret");
        let config = ws.path(&format!("sim-{count}.yaml"));
        std::fs::write(
            &config,
            format!(
                "integration: {{identifier: sim}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArn: arn:aws:iam::111111111111:role/PortOceanReadRole\n  regions: [{}]\n  concurrency: {{accounts: {concurrency}, requestsPerSecond: 10}}\ncatalog:\n  type: port\n  baseUrl: {}\n  clientId: {}\n  clientSecretFile: {}\nmappings: [mappings/sim.yaml]\n",
                REGIONS.join(", "),
                port.url(),
                port.config().client_id.expose(),
                secret.display()
            ),
        )
        .expect("config");
        for sync in ["first", "resync"] {
            port.reset_counters();
            let (cc_before, sts_before) = (cc.call_count(), sts.calls().len());
            let started = Instant::now();
            let handles: Vec<_> = (0..count)
                .map(|i| {
                    let mut command = aws.command_in("/usr/bin/time", ws.dir.path(), cc);
                    command
                        .args(["-f", "SIM_MAX_RSS_KB %M", &bin, "apply", "-c"])
                        .arg(&config)
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped());
                    if count > 1 {
                        command.args(["--shard", &format!("{i}/{count}")]);
                    }
                    std::thread::spawn(move || {
                        let out = command.output().expect("run tidemark");
                        let seconds = started.elapsed().as_secs_f64();
                        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
                        let rss = stderr
                            .lines()
                            .find_map(|l| l.strip_prefix("SIM_MAX_RSS_KB "))
                            .and_then(|v| v.trim().parse::<f64>().ok())
                            .unwrap_or(0.0);
                        // Exit 3 (a listing failed: an overloaded stand-in) is reported, not
                        // hidden: the figures of such a run are not comparable.
                        let exit = out.status.code().unwrap_or(-1);
                        assert!(matches!(exit, 0 | 3), "replica {i}: {stderr}");
                        Replica {
                            seconds,
                            max_rss_mib: rss / 1024.0,
                            exit,
                        }
                    })
                })
                .collect();
            let replicas: Vec<Replica> = handles
                .into_iter()
                .map(|h| h.join().expect("replica"))
                .collect();
            let wall = started.elapsed().as_secs_f64();
            let counters = port.counters();
            let seconds: Vec<String> = replicas
                .iter()
                .map(|r| format!("{:.1}", r.seconds))
                .collect();
            let rss: Vec<String> = replicas
                .iter()
                .map(|r| format!("{:.0}", r.max_rss_mib))
                .collect();
            let exits: Vec<String> = replicas.iter().map(|r| r.exit.to_string()).collect();
            println!(
                "BENCH replicas={count} sync={sync} exit=[{}] wall_s={wall:.1} replica_s=[{}] max_rss_mib=[{}] aws_calls={} sts_calls={} port_reads={} port_writes={} port_entity_writes={} port_entities={}",
                exits.join(","),
                seconds.join(","),
                rss.join(","),
                cc.call_count() - cc_before,
                sts.calls().len() - sts_before,
                counters.reads,
                counters.writes,
                counters.entity_writes,
                port.entities().len()
            );
        }
    }
}
