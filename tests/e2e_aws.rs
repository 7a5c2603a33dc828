//! End-to-end through the binary with the AWS source: the real SDK clients, pointed with
//! `AWS_ENDPOINT_URL_*` at our STS stand-in (which enforces ExternalId and can deny a role) and
//! Cloud Control stand-ins, and the local catalog.

mod support;

use std::process::{Command, Output};

use serde_json::{Value as Json, json};
use support::aws_stand_ins::AwsStandIns;
use support::cli::{BIN, Workspace, assert_exit, code, plan_account, text};
use support::cloudcontrol::{CloudControl, Effect, Fault};
use support::fixtures::{self, REGION};

const BASE_KEY: &str = "AKIATIDEMARKE2E00001";
const BASE_SECRET: &str = "e2e-base-secret-value";
const EXTERNAL_ID: &str = "ext-id-3f9a1c";
const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";
const DEV: &str = "444444444444";
const QUEUE: &str = "AWS::SQS::Queue";

/// The stand-ins and a workspace whose config names three accounts by role; the binary runs
/// against them.
struct World {
    aws: AwsStandIns,
    ws: Workspace,
}

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/PortOceanReadRole")
}

fn queue_props(account: &str, name: &str) -> Json {
    let mut queue = fixtures::sqs_queue(account, "us-east-1", name);
    queue["Properties"]["QueueUrl"] = queue["Identifier"].clone();
    queue["Properties"].take()
}

impl World {
    fn new() -> World {
        let aws = AwsStandIns::start(BASE_KEY, BASE_SECRET);
        aws.sts.require_external_id(EXTERNAL_ID);
        let ws = Workspace::new();
        let arns: Vec<String> = [PROD, STAGING, DEV].iter().map(|a| role(a)).collect();
        ws.write(
            "tidemark.yaml",
            &format!(
                "integration: {{identifier: e2e-aws}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArns: {}\n    externalId: ${{TEST_EXTERNAL_ID}}\n  regions: [us-east-1]\n  concurrency: {{accounts: 2, requestsPerSecond: 100}}\ncatalog: {{type: local}}\nmappings: [mappings/queues.yaml]\n",
                serde_json::to_string(&arns).expect("json")
            ),
        );
        let (mapping, blueprints) = fixtures::accounts_and_queues(false, &[(REGION, "string")]);
        ws.write("mappings/queues.yaml", &mapping);
        ws.write("mappings/blueprints.json", &blueprints);
        World { aws, ws }
    }

    /// A Cloud Control stand-in holding `n` queues per account.
    fn cloud_control(&self, n: usize) -> CloudControl {
        let cc = self.aws.cloud_control();
        for account in [PROD, STAGING, DEV] {
            for i in 0..n {
                let name = format!("q{i}");
                cc.add_sqs_queue(account, &name, queue_props(account, &name));
            }
        }
        cc
    }

    fn run(&self, cc: &CloudControl, args: &[&str]) -> Output {
        let config = self.ws.config();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-c", &config]);
        self.command(cc, &all).output().expect("run tidemark")
    }

    /// `tidemark args…` with nothing from this process's environment but `PATH`: base keys, the
    /// ExternalId and the endpoints of the stand-ins.
    fn command(&self, cc: &CloudControl, args: &[&str]) -> Command {
        let mut command = self.aws.command_in(BIN, self.ws.dir.path(), cc);
        command.args(args).env("TEST_EXTERNAL_ID", EXTERNAL_ID);
        command
    }
}

#[test]
fn a_denied_account_a_failed_scope_and_a_throttled_scope_behave_as_specified() {
    let world = World::new();
    let first = world.cloud_control(3);
    let out = world.run(&first, &["apply"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("Applied:"));
    // Every AssumeRole carried the ExternalId, and a readable session name.
    let calls = world.aws.sts.calls();
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
    world.aws.sts.deny_role(&role(STAGING));
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
    let staging = plan_account(&plan, STAGING);
    assert_eq!(staging["status"], "unassumable");
    let advice = staging["error"].as_str().unwrap_or_default();
    assert!(
        advice.contains("trust policy") && advice.contains("ExternalId"),
        "{advice}"
    );
    assert!(!text(&out.stdout).contains(EXTERNAL_ID) && !text(&out.stderr).contains(EXTERNAL_ID));

    let out = world.run(&second, &["apply"]);
    assert_exit(&out, 3);
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
    let snap = world.ws.path("snap");
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

/// A base session token and Port credentials, set for every command though this config does not
/// use Port: neither may leak through fallbacks, `validate --print` or dependencies' logs.
const BASE_SESSION_TOKEN: &str = "base-session-token-9c2e71";
const PORT_CLIENT_ID: &str = "port-client-id-5d1b";
const PORT_CLIENT_SECRET: &str = "port-client-secret-a84f0e";

/// Every secret value a run may hold: the configured ones and those the STS stand-in issued to the
/// member roles (`secret-N`, `token-N`).
fn secrets() -> Vec<String> {
    let mut all: Vec<String> = [
        EXTERNAL_ID,
        BASE_SECRET,
        BASE_SESSION_TOKEN,
        PORT_CLIENT_ID,
        PORT_CLIENT_SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in 1..=9 {
        all.push(format!("secret-{n}<"));
        all.push(format!("secret-{n}\""));
        all.push(format!("token-{n}"));
    }
    all
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in secrets() {
        assert!(
            !text.contains(&secret),
            "{what} shows the secret {secret:?}"
        );
    }
}

/// Every file below `dir`, as text.
fn files_below(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            found.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    found
}

#[test]
fn secrets_never_appear_in_any_output_at_trace_level() {
    let world = World::new();
    let cc = world.cloud_control(1);
    let with_secrets = |mut command: Command| {
        command
            .env("AWS_SESSION_TOKEN", BASE_SESSION_TOKEN)
            .env("PORT_CLIENT_ID", PORT_CLIENT_ID)
            .env("PORT_CLIENT_SECRET", PORT_CLIENT_SECRET)
            .env("RUST_LOG", "trace");
        command
    };
    let config = world.ws.config();
    std::fs::write(
        world.ws.path("items.json"),
        json!({"Identifier": "q", "TypeName": QUEUE, "Properties": queue_props(PROD, "q")})
            .to_string(),
    )
    .expect("items");
    for args in [
        vec!["plan", "--out", "plan.json"],
        vec!["apply"],
        vec!["accounts"],
        vec!["validate", "--print"],
        vec!["snapshot", "--out", "recorded"],
        vec!["entities"],
    ] {
        let mut all = args.clone();
        all.extend(["--log-level", "trace", "-c", &config]);
        let out = with_secrets(world.command(&cc, &all))
            .output()
            .expect("run tidemark");
        assert!(
            matches!(code(&out), 0 | 3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} logged nothing at trace");
        assert_no_secret(&format!("{args:?} stdout"), &text(&out.stdout));
        assert_no_secret(&format!("{args:?} stderr"), &text(&out.stderr));
    }
    let map = with_secrets(world.command(
        &cc,
        &[
            "map",
            "--mapping",
            "mappings/queues.yaml",
            "--input",
            "items.json",
        ],
    ))
    .output()
    .expect("run tidemark map");
    assert_eq!(code(&map), 0, "{}", text(&map.stderr));
    assert_no_secret(
        "map",
        &format!("{}{}", text(&map.stdout), text(&map.stderr)),
    );

    // The daemon: one sync at trace level, then SIGTERM.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let listen = format!("127.0.0.1:{port}");
    // Logs go to files: at trace level they would fill a pipe nobody reads yet.
    let log = |name: &str| std::fs::File::create(world.ws.path(name)).expect("log file");
    let mut watch =
        with_secrets(world.command(&cc, &["watch", "-c", &config, "--listen", &listen]))
            .stdout(log("watch.out"))
            .stderr(log("watch.err"))
            .spawn()
            .expect("start tidemark watch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready(port) {
        if std::time::Instant::now() > deadline {
            let _ = watch.kill();
            panic!(
                "watch never became ready; see its log in {}",
                world.ws.dir.path().display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let term = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = watch.wait().expect("watch exit");
    assert_eq!(status.code(), Some(0));
    let logged = std::fs::read_to_string(world.ws.path("watch.err")).expect("log");
    assert!(logged.contains("TRACE"), "watch logged nothing at trace");

    for (path, content) in files_below(world.ws.dir.path()) {
        if path.ends_with("tidemark.yaml") || path.ends_with("items.json") {
            continue;
        }
        assert_no_secret(&path, &content);
    }
    // The files that must exist were scanned.
    for written in [
        "plan.json",
        "recorded/manifest.json",
        ".tidemark/catalog.db",
    ] {
        assert!(world.ws.path(written).exists(), "{written} missing");
    }
}

/// `/readyz` answers 200.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    if write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

// Issue 14: what Cloud Control really returns, through the binary.
#[path = "e2e_aws/fidelity.rs"]
mod fidelity;
