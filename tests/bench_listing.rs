//! The listing benchmark through the binary (bench/aws/binary.sh, figures in BENCHMARKS.md):
//! `tidemark plan` against the STS and Cloud Control stand-ins with every call taking 200 ms,
//! N accounts × 3 regions × 5 kinds × 3 pages, against the ideal of
//! ceil(N / concurrency.accounts) × (1 AssumeRole + 3 pages) × 200 ms. Prints the wall times and
//! the CPU the stand-ins used; asserts only that every item was planned. Ignored: run by the
//! script, one at a time.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::aws_stand_ins::AwsStandIns;
use support::cli::{BIN, Workspace};

const BASE_KEY: &str = "AKIATIDEMARKBENCH001";
const LATENCY: Duration = Duration::from_millis(200);
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "us-west-2"];
const KINDS: [&str; 5] = [
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::Lambda::Function",
    "AWS::EC2::Instance",
    "AWS::ECS::Cluster",
];

/// CPU seconds (user + system) this process, which serves the stand-ins, has used.
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn bench(accounts: usize, concurrency: usize, runs: usize) {
    let (median, ideal, _, _) = measure(accounts, concurrency, runs, LATENCY);
    println!(
        "BENCH accounts={accounts} concurrency.accounts={concurrency}: median {:.3} s ({runs} runs), ideal {ideal:.3} s, {:.2}x ideal; tidemark cpu {:.2} s, peak rss {:.0} MiB; stand-ins used {:.0}% of a core",
        median.wall,
        median.wall / ideal,
        median.cpu,
        median.rss_mib,
        median.standin_cpu * 100.0
    );
}

/// One run's figures.
#[derive(Clone, Copy, Default)]
struct Figures {
    wall: f64,
    /// tidemark's CPU seconds (user + system).
    cpu: f64,
    /// tidemark's peak resident memory, MiB.
    rss_mib: f64,
    /// The share of a core the stand-ins used while it ran.
    standin_cpu: f64,
}

/// Runs `tidemark plan` `runs` times; the run with the median wall time, the ideal, and the
/// items and requests per run.
fn measure(
    accounts: usize,
    concurrency: usize,
    runs: usize,
    latency: Duration,
) -> (Figures, f64, usize, usize) {
    let aws = AwsStandIns::start(BASE_KEY, "bench-secret");
    let (sts, cc) = (&aws.sts, &aws.cc);
    let ids: Vec<String> = (0..accounts)
        .map(|i| format!("{:012}", 300_000_000_000u64 + i as u64))
        .collect();
    for a in &ids {
        for r in REGIONS {
            for k in KINDS {
                for i in 0..9 {
                    cc.add(a, r, k, &format!("{k}-{i}"), json!({"Index": i}));
                }
            }
        }
    }
    sts.set_latency(latency);
    cc.set_latency(latency);
    let ws = Workspace::new();
    let roles: Vec<String> = ids
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:role/PortOceanReadRole"))
        .collect();
    let mut mapping = String::from("resources:\n");
    for k in KINDS {
        mapping.push_str(&format!(
            "  - kind: {k}\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n          identifier: .__AccountId + \"/\" + .__Region + \"/\" + .Identifier\n          title: .Identifier\n          blueprint: '\"thing\"'\n          properties:\n            index: .Properties.Index\n"
        ));
    }
    ws.write("mappings/bench.yaml", &mapping);
    ws.write(
        "mappings/blueprints.json",
        r#"[{"identifier": "thing", "title": "Thing", "schema": {"properties": {"index": {"type": "number"}}}, "relations": {}}]"#,
    );
    ws.write(
        "tidemark.yaml",
        &format!(
            "integration: {{identifier: bench}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArns: {}\n  regions: {}\n  concurrency: {{accounts: {concurrency}, requestsPerSecond: 1000}}\ncatalog: {{type: local}}\nmappings: [mappings/bench.yaml]\n",
            serde_json::to_string(&roles).expect("json"),
            serde_json::to_string(&REGIONS).expect("json"),
        ),
    );
    let ideal = accounts.div_ceil(concurrency) as f64 * 4.0 * latency.as_secs_f64();
    let mut runs_done: Vec<Figures> = Vec::new();
    let timing = ws.path("time.txt");
    for _ in 0..runs {
        let cpu = own_cpu();
        let start = Instant::now();
        let out = aws
            .command_in("/usr/bin/time", ws.dir.path(), cc)
            .arg("-f")
            .arg("%U %S %M")
            .arg("-o")
            .arg(&timing)
            .arg(BIN)
            .args(["plan", "-c", "tidemark.yaml", "--format", "json"])
            .output()
            .expect("run tidemark");
        let wall = start.elapsed().as_secs_f64();
        let standin_cpu = (own_cpu() - cpu) / wall;
        let time = std::fs::read_to_string(&timing).unwrap_or_default();
        let nums: Vec<f64> = time
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let (cpu, rss_mib) = match nums.as_slice() {
            [u, s, kb] => (u + s, kb / 1024.0),
            _ => (0.0, 0.0),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("create"), "nothing planned: {stdout:.400}");
        runs_done.push(Figures {
            wall,
            cpu,
            rss_mib,
            standin_cpu,
        });
    }
    runs_done.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let items = accounts * REGIONS.len() * KINDS.len() * 9;
    // One AssumeRole, then 3 pages for each of 3 regions × 5 kinds, per account.
    let requests = accounts * (1 + REGIONS.len() * KINDS.len() * 3);
    (runs_done[runs_done.len() / 2], ideal, items, requests)
}

/// The scale table of BENCHMARKS.md: 1, 10, 100 and 1,000 accounts, listing + map + plan
/// against an empty local catalog, 50 ms per call, concurrency.accounts 50.
#[test]
#[ignore = "benchmark: run by bench/aws/binary.sh scale"]
fn bench_scale() {
    for accounts in [1, 10, 100, 1000] {
        let (f, ideal, items, requests) = measure(accounts, 50, 3, Duration::from_millis(50));
        println!(
            "BENCH scale accounts={accounts}: items {items}, requests {requests}, wall {:.2} s (ideal {ideal:.2} s), tidemark cpu {:.2} s, peak rss {:.0} MiB, stand-ins {:.0}% of a core",
            f.wall,
            f.cpu,
            f.rss_mib,
            f.standin_cpu * 100.0
        );
    }
}

#[test]
#[ignore = "benchmark: run by bench/aws/binary.sh"]
fn bench_listing_through_the_binary_20_accounts() {
    bench(20, 5, 5);
}

#[test]
#[ignore = "benchmark: run by bench/aws/binary.sh"]
fn bench_listing_through_the_binary_200_accounts() {
    bench(200, 50, 3);
}
