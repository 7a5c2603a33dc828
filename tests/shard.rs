//! Sharding through the binary (issue 19): several `tidemark apply --shard I/N` processes against
//! one organisation (Organizations mode, served by the STS and Cloud Control stand-ins) and one
//! Port stand-in, compared with what one process writes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::aws_stand_ins::AwsStandIns;
use support::cli::{BIN, Workspace, code, text};
use support::cloudcontrol::CloudControl;
use support::fixtures::{self, REGION};
use support::port_standin::PortStandIn;
use tidemark::core::shard::owner_of;

const BASE_KEY: &str = "AKIATIDEMARKSHARD001";
const MANAGEMENT: &str = "111111111111";
const QUEUES_PER_ACCOUNT: usize = 4;

/// Twelve member accounts: enough that each of 3 shards and each of 4 owns some, and that going
/// from 3 to 4 moves some (checked in [`Org::new`], since the assignment is a hash).
fn members() -> Vec<String> {
    (0..12u64)
        .map(|i| format!("{:012}", 210_000_000_000 + i * 1_000_003))
        .collect()
}

/// The stand-ins and a workspace; the binary runs against them.
struct Org {
    aws: AwsStandIns,
    ws: Workspace,
    members: Vec<String>,
}

/// One Port stand-in and the config pointing at it.
struct Catalog {
    port: PortStandIn,
    config: String,
}

impl Org {
    fn new() -> Org {
        let members = members();
        for count in [3, 4] {
            let owners: BTreeSet<u32> = members.iter().map(|a| owner_of(a, count)).collect();
            assert_eq!(
                owners.len() as u32,
                count,
                "every shard of {count} owns an account"
            );
        }
        assert!(
            members.iter().any(|a| owner_of(a, 3) != owner_of(a, 4)),
            "going from 3 to 4 shards moves an account"
        );
        let aws = AwsStandIns::start(BASE_KEY, "shard-base-secret");
        let ids: Vec<&str> = members.iter().map(String::as_str).collect();
        aws.cc.serve_organization_of(&ids);
        for account in &members {
            for i in 0..QUEUES_PER_ACCOUNT {
                add_queue(&aws.cc, account, i, 30);
            }
        }
        let ws = Workspace::new();
        let visibility = ("visibility", ".Properties.VisibilityTimeout");
        let (mapping, blueprints) =
            fixtures::accounts_and_queues(false, &[(REGION, "string"), (visibility, "number")]);
        ws.write("mappings/queues.yaml", &mapping);
        ws.write("mappings/blueprints.json", &blueprints);
        Org { aws, ws, members }
    }

    /// A fresh Port stand-in and a config file (`name`.yaml) that syncs the organisation into it.
    fn catalog(&self, name: &str) -> Catalog {
        let port = PortStandIn::start_in_thread();
        let secret = self.ws.path(&format!("{name}.secret"));
        std::fs::write(&secret, port.config().client_secret.expose()).expect("secret");
        let config = self.ws.path(&format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "integration: {{identifier: e2e-shard}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArn: arn:aws:iam::{MANAGEMENT}:role/PortOceanReadRole\n  regions: [us-east-1]\n  concurrency: {{accounts: 4, requestsPerSecond: 1000}}\ncatalog:\n  type: port\n  baseUrl: {}\n  clientId: {}\n  clientSecretFile: {}\nmappings: [mappings/queues.yaml]\n",
                port.url(),
                port.config().client_id.expose(),
                secret.display()
            ),
        )
        .expect("config");
        Catalog {
            port,
            config: config.display().to_string(),
        }
    }

    fn command(&self, catalog: &Catalog, args: &[&str]) -> Command {
        let mut command = self.aws.command_in(BIN, self.ws.dir.path(), &self.aws.cc);
        command.args(args).args(["-c", &catalog.config]);
        command
    }

    fn run(&self, catalog: &Catalog, args: &[&str]) -> Output {
        self.command(catalog, args).output().expect("run tidemark")
    }

    fn spawn(&self, catalog: &Catalog, args: &[&str]) -> Child {
        self.command(catalog, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tidemark")
    }

    /// `apply`, with `extra` flags, which must succeed.
    fn apply(&self, catalog: &Catalog, extra: &[&str]) -> Output {
        let mut args = vec!["apply"];
        args.extend_from_slice(extra);
        let out = self.run(catalog, &args);
        assert_eq!(code(&out), 0, "apply {extra:?}: {}", show(&out));
        out
    }

    /// `apply --shard i/count` for every shard at once, the others started before shard 0 so
    /// that they must wait for its blueprints.
    fn apply_sharded(&self, catalog: &Catalog, count: u32) {
        let mut children: Vec<(String, Child)> = (1..count)
            .map(|i| {
                let shard = format!("{i}/{count}");
                let child = self.spawn(catalog, &["apply", "--shard", &shard]);
                (shard, child)
            })
            .collect();
        let first = format!("0/{count}");
        children.insert(
            0,
            (
                first.clone(),
                self.spawn(catalog, &["apply", "--shard", &first]),
            ),
        );
        for (shard, child) in children {
            let out = child.wait_with_output().expect("wait");
            assert_eq!(code(&out), 0, "apply --shard {shard}: {}", show(&out));
        }
    }

    /// `plan --format json` with `extra` flags: (exit code, plan).
    fn plan(&self, catalog: &Catalog, extra: &[&str]) -> (i32, Json) {
        let mut args = vec!["plan", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.run(catalog, &args);
        let plan = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan is not JSON ({e}): {}", show(&out)));
        (code(&out), plan)
    }

    /// The account ids `accounts --shard` lists.
    fn accounts_of(&self, catalog: &Catalog, shard: &str) -> Vec<String> {
        let out = self.run(catalog, &["accounts", "--shard", shard, "--format", "json"]);
        assert_eq!(code(&out), 0, "accounts --shard {shard}: {}", show(&out));
        let doc: Json = serde_json::from_slice(&out.stdout).expect("accounts JSON");
        let (index, count) = shard.split_once('/').expect("INDEX/COUNT");
        assert_eq!(
            doc["shard"],
            json!({"index": index.parse::<u32>().expect("index"), "count": count.parse::<u32>().expect("count")})
        );
        account_ids(&doc)
    }

    /// The members shard `index` of `count` owns.
    fn owned_by(&self, index: u32, count: u32) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|a| owner_of(a, count) == index)
            .cloned()
            .collect()
    }
}

/// The ids of the accounts a plan or an `accounts` listing names, in its order.
fn account_ids(doc: &Json) -> Vec<String> {
    doc["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

fn add_queue(cc: &CloudControl, account: &str, i: usize, visibility: u64) {
    cc.add_sqs_queue(
        account,
        &format!("q{i}"),
        json!({"VisibilityTimeout": visibility}),
    );
}

fn show(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

/// What the stand-in holds: (blueprint, identifier) → (body, `$datasource`).
fn contents(port: &PortStandIn) -> BTreeMap<(String, String), (Json, String)> {
    port.entities()
        .into_iter()
        .map(|e| {
            (
                (e.blueprint, e.identifier),
                (Json::Object(e.body), e.datasource),
            )
        })
        .collect()
}

/// The account an entity of this test belongs to: an account entity is its own; a queue's ARN
/// names it.
fn account_of(key: &(String, String)) -> String {
    match key.0.as_str() {
        "account" => key.1.clone(),
        _ => key.1.split(':').nth(4).unwrap_or_default().to_string(),
    }
}

#[test]
fn three_shards_write_exactly_the_catalog_that_one_process_writes() {
    let org = Org::new();
    let one = org.catalog("one");
    org.apply(&one, &[]);
    let expected = contents(&one.port);
    assert_eq!(
        expected.len(),
        org.members.len() * (QUEUES_PER_ACCOUNT + 1),
        "entities"
    );

    let three = org.catalog("three");
    org.apply_sharded(&three, 3);
    assert_eq!(contents(&three.port), expected);
    // Every blueprint was created once, by shard 0.
    assert!(three.port.blueprint("queue").is_some());

    // Each shard now finds nothing to do: none takes another's entities for gone.
    three.port.reset_counters();
    for i in 0..3 {
        let (exit, plan) = org.plan(&three, &["--shard", &format!("{i}/3")]);
        assert_eq!(exit, 0, "{plan}");
        assert_eq!(plan["shard"], json!({"index": i, "count": 3}));
        assert_eq!(plan["summary"]["delete"], 0, "{plan}");
        assert_eq!(plan["summary"]["withheld"], 0, "{plan}");
        let listed: BTreeSet<String> = account_ids(&plan).into_iter().collect();
        let own = org.owned_by(i, 3);
        assert_eq!(listed, own, "shard {i}/3 plans exactly its accounts");
        org.apply(&three, &["--shard", &format!("{i}/3")]);
    }
    assert_eq!(three.port.counters().writes, 0, "no writes after the sync");
    assert_eq!(contents(&three.port), expected);
}

#[test]
fn a_shard_killed_mid_apply_leaves_the_others_untouched_and_its_rerun_converges() {
    let org = Org::new();
    let one = org.catalog("one");
    org.apply(&one, &[]);
    let expected = contents(&one.port);

    let sharded = org.catalog("sharded");
    org.apply(&sharded, &["--shard", "0/3"]);
    org.apply(&sharded, &["--shard", "2/3"]);
    let others: BTreeMap<_, _> = contents(&sharded.port)
        .into_iter()
        .filter(|(k, _)| owner_of(&account_of(k), 3) != 1)
        .collect();
    let writes_of_others: BTreeMap<_, _> = sharded
        .port
        .entities()
        .into_iter()
        .map(|e| ((e.blueprint, e.identifier), e.writes))
        .collect();

    // Slow writes leave a wide window between shard 1's first committed write and its last.
    sharded
        .port
        .faults(|f| f.latency = Duration::from_millis(300));
    let mut child = org.spawn(&sharded, &["apply", "--shard", "1/3"]);
    // A guard against a hang, not a timing assertion: the condition is what is waited for.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = contents(&sharded.port)
            .keys()
            .any(|k| owner_of(&account_of(k), 3) == 1);
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "shard 1 never wrote");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "shard 1 ended before it wrote"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("kill shard 1");
    let _ = child.wait();
    assert!(still_running, "shard 1 was killed mid-apply");
    sharded.port.faults(|f| f.latency = Duration::ZERO);

    let after_kill = contents(&sharded.port);
    let untouched: BTreeMap<_, _> = after_kill
        .iter()
        .filter(|(k, _)| owner_of(&account_of(k), 3) != 1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        untouched, others,
        "the other shards' entities are untouched"
    );
    assert!(
        after_kill.len() < expected.len(),
        "shard 1 was stopped before it finished"
    );

    org.apply(&sharded, &["--shard", "1/3"]);
    assert_eq!(contents(&sharded.port), expected);
    for e in sharded.port.entities() {
        if owner_of(&account_of(&(e.blueprint.clone(), e.identifier.clone())), 3) != 1 {
            assert_eq!(
                Some(&e.writes),
                writes_of_others.get(&(e.blueprint.clone(), e.identifier.clone())),
                "{} {} was written again",
                e.blueprint,
                e.identifier
            );
        }
    }
}

#[test]
fn resharding_from_three_to_four_moves_accounts_without_deletes_or_writes() {
    let org = Org::new();
    let catalog = org.catalog("reshard");
    org.apply_sharded(&catalog, 3);
    let before = contents(&catalog.port);

    catalog.port.reset_counters();
    org.apply_sharded(&catalog, 4);
    let counters = catalog.port.counters();
    assert_eq!(counters.writes, 0, "{counters:?}");
    assert_eq!(counters.entity_writes, 0, "{counters:?}");
    assert_eq!(
        contents(&catalog.port),
        before,
        "nothing deleted or changed"
    );

    // Every account is owned by exactly one of the four shards afterwards.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        for account in org.accounts_of(&catalog, &format!("{i}/4")) {
            *seen.entry(account).or_default() += 1;
        }
    }
    let all: BTreeSet<String> = org.members.iter().cloned().collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");

    // The new owner of a moved account adopts it: a change there is planned by its shard of 4
    // alone, and no other shard of 4 plans anything.
    let moved = org
        .members
        .iter()
        .find(|a| owner_of(a, 3) != owner_of(a, 4))
        .expect("a moved account");
    add_queue(&org.aws.cc, moved, QUEUES_PER_ACCOUNT, 99);
    for i in 0..4 {
        let (_, plan) = org.plan(&catalog, &["--shard", &format!("{i}/4")]);
        let expected = u32::from(i == owner_of(moved, 4));
        assert_eq!(plan["summary"]["create"], expected, "shard {i}/4: {plan}");
        assert_eq!(plan["summary"]["update"], 0, "shard {i}/4: {plan}");
        assert_eq!(plan["summary"]["delete"], 0, "shard {i}/4: {plan}");
    }
}

#[test]
fn only_the_owning_shard_takes_an_account_that_left_the_organisation_for_gone() {
    let org = Org::new();
    let catalog = org.catalog("gone");
    org.apply_sharded(&catalog, 3);
    let leaving = org.members[0].clone();
    let owner = owner_of(&leaving, 3);
    let remaining: Vec<&str> = org.members[1..].iter().map(String::as_str).collect();
    org.aws.cc.serve_organization_of(&remaining);

    for i in (0..3).filter(|&i| i != owner) {
        let (exit, plan) = org.plan(&catalog, &["--shard", &format!("{i}/3")]);
        assert_eq!(exit, 0, "{plan}");
        assert_eq!(plan["summary"]["delete"], 0, "{plan}");
        assert_eq!(plan["summary"]["withheld"], 0, "{plan}");
    }
    // Its own shard sees it gone, and the guard holds every delete until it is confirmed.
    let (exit, plan) = org.plan(&catalog, &["--shard", &format!("{owner}/3")]);
    assert_eq!(exit, 3, "{plan}");
    assert_eq!(plan["summary"]["delete"], 0, "{plan}");
    assert_eq!(
        plan["summary"]["withheld"],
        QUEUES_PER_ACCOUNT + 1,
        "{plan}"
    );
    assert!(
        plan["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .any(|a| a["id"] == json!(leaving) && a["status"] == "gone"),
        "{plan}"
    );
    let confirm = format!("--allow-mass-delete={leaving}");
    org.apply(&catalog, &["--shard", &format!("{owner}/3"), &confirm]);
    let left: Vec<_> = contents(&catalog.port)
        .into_keys()
        .filter(|k| account_of(k) == leaving)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        contents(&catalog.port).len(),
        (org.members.len() - 1) * (QUEUES_PER_ACCOUNT + 1)
    );
}

#[test]
fn the_shard_comes_from_the_pod_name_and_a_bad_one_is_an_error() {
    let org = Org::new();
    let catalog = org.catalog("auto");
    let config = std::fs::read_to_string(&catalog.config).expect("config");
    std::fs::write(
        &catalog.config,
        format!("{config}shard: {{index: auto, count: 3}}\n"),
    )
    .expect("config");
    let out = org
        .command(&catalog, &["accounts", "--format", "json"])
        .env("HOSTNAME", "tidemark-2")
        .output()
        .expect("run");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let doc: Json = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["shard"], json!({"index": 2, "count": 3}));
    let ids: BTreeSet<String> = account_ids(&doc).into_iter().collect();
    let own = org.owned_by(2, 3);
    assert_eq!(ids, own);

    // Without a pod name, `auto` cannot be resolved; the flag wins over the config.
    let out = org.run(&catalog, &["accounts"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(text(&out.stderr).contains("HOSTNAME"), "{}", show(&out));
    assert_eq!(
        org.accounts_of(&catalog, "0/3").len(),
        org.members.iter().filter(|a| owner_of(a, 3) == 0).count()
    );

    for bad in ["3/3", "1", "0/0"] {
        let out = org.run(&catalog, &["plan", "--shard", bad]);
        assert_eq!(code(&out), 1, "--shard {bad}: {}", show(&out));
    }
}

#[path = "shard/simulation.rs"]
mod simulation;
