//! End-to-end through the binary with the AWS source: the real SDK clients, pointed with
//! `AWS_ENDPOINT_URL_*` at our STS stand-in (which enforces ExternalId and can deny a role) and
//! Cloud Control stand-ins, and the local catalog.

mod support;

use std::process::{Command, Output};

use serde_json::{Value as Json, json};
use support::cli::{BIN, code, text};
use support::cloudcontrol::{CloudControl, Effect, Fault, Keys};
use support::sts::StsStandIn;

const BASE_KEY: &str = "AKIATIDEMARKE2E00001";
const BASE_SECRET: &str = "e2e-base-secret-value";
const EXTERNAL_ID: &str = "ext-id-3f9a1c";
const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";
const DEV: &str = "444444444444";
const QUEUE: &str = "AWS::SQS::Queue";

const MAPPING: &str = r#"
resources:
  - kind: AWS::Account::Info
    port:
      entity:
        mappings:
          identifier: .Properties.Id
          title: .Properties.Name
          blueprint: '"account"'
  - kind: AWS::SQS::Queue
    port:
      entity:
        mappings:
          identifier: .Properties.Arn
          title: .Properties.QueueName
          blueprint: '"queue"'
          properties:
            region: .__Region
          relations:
            account: .__AccountId
"#;

const BLUEPRINTS: &str = r#"[
  {"identifier": "account", "title": "Account", "schema": {"properties": {}}, "relations": {}},
  {"identifier": "queue", "title": "Queue", "schema": {"properties": {"region": {"type": "string"}}},
   "relations": {"account": {"target": "account", "many": false, "required": false}}}
]"#;

struct World {
    runtime: tokio::runtime::Runtime,
    sts: StsStandIn,
    dir: tempfile::TempDir,
}

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/PortOceanReadRole")
}

fn queue_props(account: &str, name: &str) -> Json {
    json!({"QueueName": name, "Arn": format!("arn:aws:sqs:us-east-1:{account}:{name}"),
           "QueueUrl": format!("https://sqs.us-east-1.amazonaws.com/{account}/{name}")})
}

impl World {
    fn new() -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let sts = runtime.block_on(StsStandIn::start());
        sts.register_base_key(BASE_KEY);
        sts.require_external_id(EXTERNAL_ID);
        let dir = tempfile::tempdir().expect("tempdir");
        let arns: Vec<String> = [PROD, STAGING, DEV].iter().map(|a| role(a)).collect();
        std::fs::write(
            dir.path().join("tidemark.yaml"),
            format!(
                "integration: {{identifier: e2e-aws}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArns: {}\n    externalId: ${{TEST_EXTERNAL_ID}}\n  regions: [us-east-1]\n  concurrency: {{accounts: 2, requestsPerSecond: 100}}\ncatalog: {{type: local}}\nmappings: [mappings/queues.yaml]\n",
                serde_json::to_string(&arns).expect("json")
            ),
        )
        .expect("config");
        std::fs::create_dir_all(dir.path().join("mappings")).expect("mkdir");
        std::fs::write(dir.path().join("mappings/queues.yaml"), MAPPING).expect("mapping");
        std::fs::write(dir.path().join("mappings/blueprints.json"), BLUEPRINTS)
            .expect("blueprints");
        World { runtime, sts, dir }
    }

    /// A Cloud Control stand-in holding `n` queues per account.
    fn cloud_control(&self, n: usize) -> CloudControl {
        let cc = self
            .runtime
            .block_on(CloudControl::start(Keys::StandIn(self.sts.keys())));
        for account in [PROD, STAGING, DEV] {
            for i in 0..n {
                let name = format!("q{i}");
                cc.add(
                    account,
                    "us-east-1",
                    QUEUE,
                    &format!("https://sqs.us-east-1.amazonaws.com/{account}/{name}"),
                    queue_props(account, &name),
                );
            }
        }
        cc
    }

    fn run(&self, cc: &CloudControl, args: &[&str]) -> Output {
        let config = self.dir.path().join("tidemark.yaml").display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-c", &config]);
        Command::new(BIN)
            .args(&all)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", BASE_KEY)
            .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_STS", &self.sts.url)
            .env("AWS_ENDPOINT_URL_CLOUDCONTROL", &cc.url)
            .env("AWS_ENDPOINT_URL_ACCOUNT", &cc.url)
            .env("TEST_EXTERNAL_ID", EXTERNAL_ID)
            .env("NO_COLOR", "1")
            .output()
            .expect("run tidemark")
    }
}

#[test]
fn a_denied_account_a_failed_scope_and_a_throttled_scope_behave_as_specified() {
    let world = World::new();
    let first = world.cloud_control(3);
    let out = world.run(&first, &["apply"]);
    assert_eq!(
        code(&out),
        0,
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("Applied:"));
    // Every AssumeRole carried the ExternalId, and a readable session name.
    let calls = world.sts.calls();
    let assumes: Vec<_> = calls.iter().filter(|c| c.action == "AssumeRole").collect();
    assert_eq!(assumes.len(), 3, "{calls:?}");
    assert!(
        assumes
            .iter()
            .all(|c| c.external_id.as_deref() == Some(EXTERNAL_ID))
    );
    assert!(assumes.iter().all(|c| {
        c.session_name
            .as_deref()
            .is_some_and(|s| s.starts_with("tidemark"))
    }));

    // Every account lost its last queue. Staging's role is now denied, dev's listing is denied,
    // and prod's listing is throttled twice but recovers.
    let second = world.cloud_control(2);
    world.sts.deny_role(&role(STAGING));
    second.inject(Fault {
        account: Some(DEV.into()),
        region: Some("us-east-1".into()),
        kind: Some(QUEUE.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "not authorized to perform cloudformation:ListResources".into(),
        },
    });
    second.inject(Fault {
        account: Some(PROD.into()),
        region: Some("us-east-1".into()),
        kind: Some(QUEUE.into()),
        effect: Effect::Throttle { times: 2 },
    });
    let out = world.run(&second, &["plan", "--format", "json"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    let plan: Json = serde_json::from_slice(&out.stdout).expect("plan json");
    assert_eq!(plan["summary"]["delete"], 1, "{plan:#}");
    assert_eq!(
        plan["changes"][0]["identifier"],
        format!("arn:aws:sqs:us-east-1:{PROD}:q2")
    );
    let withheld: Vec<(String, String)> = plan["withheld"]
        .as_array()
        .expect("withheld")
        .iter()
        .map(|w| {
            (
                w["account"].as_str().unwrap_or_default().to_string(),
                w["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        withheld
            .iter()
            .filter(|(a, r)| a == STAGING && r == "account_unassumable")
            .count(),
        3,
        "{withheld:?}"
    );
    assert_eq!(
        withheld
            .iter()
            .filter(|(a, r)| a == DEV && r == "scope_failed")
            .count(),
        3,
        "{withheld:?}"
    );
    assert_eq!(withheld.len(), 6);
    let scopes = plan["scopes"].as_array().expect("scopes");
    assert_eq!(scopes.len(), 1, "{scopes:?}");
    assert_eq!(scopes[0]["account"], DEV);
    assert!(
        scopes[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{scopes:?}"
    );
    let staging = plan["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["id"] == STAGING)
        .cloned()
        .expect("staging");
    assert_eq!(staging["status"], "unassumable");
    let advice = staging["error"].as_str().unwrap_or_default();
    assert!(
        advice.contains("trust policy") && advice.contains("ExternalId"),
        "{advice}"
    );
    assert!(!text(&out.stdout).contains(EXTERNAL_ID) && !text(&out.stderr).contains(EXTERNAL_ID));

    let out = world.run(&second, &["apply"]);
    assert_eq!(
        code(&out),
        3,
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 deleted"),
        "{}",
        text(&out.stdout)
    );

    // `accounts` shows the denied role with the fix to try; `snapshot` records the same outage.
    let out = world.run(&second, &["accounts"]);
    assert_eq!(code(&out), 3);
    let listing = text(&out.stdout);
    assert!(
        listing.contains(STAGING) && listing.contains("NO"),
        "{listing}"
    );
    let snap = world.dir.path().join("snap");
    let out = world.run(
        &second,
        &["snapshot", "--out", snap.to_str().expect("utf-8")],
    );
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    let manifest: Json = serde_json::from_str(
        &std::fs::read_to_string(snap.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let staging = manifest["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["Id"] == STAGING)
        .cloned()
        .expect("staging");
    assert_eq!(staging["assumed"], false);
    assert!(
        manifest["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .any(|s| s["account"] == DEV && s["status"] == "failed")
    );
    let recorded =
        std::fs::read_to_string(snap.join(PROD).join("us-east-1").join("AWS_SQS_Queue.json"))
            .expect("prod queues");
    assert_eq!(
        serde_json::from_str::<Vec<Json>>(&recorded)
            .expect("json")
            .len(),
        2
    );
    {
        let file = snap.join("manifest.json");
        let content = std::fs::read_to_string(file).expect("read");
        assert!(!content.contains(EXTERNAL_ID) && !content.contains(BASE_SECRET));
    }
}

#[test]
fn secrets_never_appear_in_any_output_at_trace_level() {
    let world = World::new();
    let cc = world.cloud_control(1);
    for args in [
        vec!["plan", "--log-level", "trace"],
        vec!["apply", "--log-level", "trace"],
        vec!["accounts", "--log-level", "trace"],
        vec!["validate", "--print", "--log-level", "trace"],
    ] {
        let out = world.run(&cc, &args);
        assert!(
            matches!(code(&out), 0 | 3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in [EXTERNAL_ID, BASE_SECRET] {
            assert!(!all.contains(secret), "{args:?} printed a secret");
        }
    }
    let db = std::fs::read(world.dir.path().join(".tidemark/catalog.db")).expect("catalog");
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(EXTERNAL_ID) && !db.contains(BASE_SECRET));
}
