//! End-to-end through the binary with the snapshot source and the Port API stand-in: the demo
//! organisation synced into "Port", counted in requests.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::cli::{Workspace, assert_exit, code, copy_tracked, output_within, text, withheld};
use support::fixtures::{self, QueueResource, RETENTION};
use support::port_standin::{Hostile, PortStandIn};

struct Setup {
    ws: Workspace,
    port: PortStandIn,
}

/// The demo snapshot with the default mappings, pointed at a fresh stand-in.
fn setup() -> Setup {
    let ws = Workspace::new();
    copy_tracked(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "examples/demo/snapshot",
        &ws.path("snapshot"),
    );
    let port = PortStandIn::start_in_thread();
    ws.write(
        "client-secret",
        &format!("{}\n", port.config().client_secret.expose()),
    );
    ws.write(
        "tidemark.yaml",
        &format!(
            "integration: {{identifier: demo-port}}\nsource: {{type: snapshot, path: snapshot}}\ncatalog:\n  type: port\n  baseUrl: {}\n  clientId: ${{TEST_PORT_CLIENT_ID}}\n  clientSecretFile: client-secret\n",
            port.url()
        ),
    );
    Setup { ws, port }
}

/// `tidemark args… -c tidemark.yaml` with the stand-in's client id in the environment.
fn port_command(ws: &Workspace, port: &PortStandIn, args: &[&str]) -> Command {
    let config = ws.config();
    let mut command = ws.command(args);
    command
        .args(["-c", &config])
        .env("TEST_PORT_CLIENT_ID", port.config().client_id.expose());
    command
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        port_command(&self.ws, &self.port, args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run tidemark")
    }

    fn run_within(&self, args: &[&str], limit: Duration) -> Output {
        output_within(self.command(args), limit)
    }

    /// Changes one property of one queue in the demo snapshot.
    fn change_one_queue(&self) {
        let rel = "snapshot/222222222222/eu-west-1/AWS_SQS_Queue.json";
        let mut queues = self.ws.read_json(rel);
        queues[0]["Properties"]["VisibilityTimeout"] = json!(120);
        self.ws.write_json(rel, &queues);
    }

    /// The stand-in's entities written by tidemark: (blueprint, identifier) → body.
    fn ours(&self) -> Vec<(String, String, Json)> {
        let mut out: Vec<(String, String, Json)> = self
            .port
            .entities()
            .into_iter()
            .filter(|e| e.datasource.starts_with("tidemark/"))
            .map(|e| (e.blueprint, e.identifier, Json::Object(e.body)))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

#[test]
fn the_demo_syncs_into_port_and_a_second_apply_sends_no_writes() {
    let s = setup();
    let first = s.run(&["apply"]);
    assert_exit(&first, 0);
    let entities = s.ours();
    assert_eq!(entities.len(), 96, "entities in the stand-in");
    let counters = s.port.counters();
    // 25 blueprints (create, then add relations) and ~96 entities in bulk batches of ≤20 per
    // (blueprint, account): far fewer requests than entities.
    assert!(counters.writes <= 25 * 2 + 60, "{counters:?}");
    assert_eq!(counters.entity_writes, 96, "{counters:?}");
    // Every write names tidemark, the integration and the account it came from.
    let accounts: std::collections::BTreeSet<String> = s
        .port
        .entities()
        .iter()
        .filter_map(|e| {
            e.datasource
                .strip_prefix("tidemark/")
                .map(|rest| rest.rsplit('/').next().unwrap_or_default().to_string())
        })
        .collect();
    assert!(accounts.contains("222222222222"), "{accounts:?}");
    assert!(
        s.port
            .entities()
            .iter()
            .all(|e| e.datasource.contains("/demo-port/"))
    );

    s.port.reset_counters();
    let second = s.run(&["apply"]);
    assert_eq!(code(&second), 0, "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).starts_with("No changes"),
        "{}",
        text(&second.stdout)
    );
    assert_eq!(s.port.counters().writes, 0, "a no-op apply wrote to Port");
    assert_eq!(s.ours(), entities);
}

#[test]
fn one_changed_resource_is_exactly_one_upsert() {
    let s = setup();
    assert_eq!(code(&s.run(&["apply"])), 0);
    s.change_one_queue();
    s.port.reset_counters();
    let out = s.run(&["apply"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let counters = s.port.counters();
    assert_eq!(
        (counters.writes, counters.entity_writes),
        (1, 1),
        "{counters:?}"
    );
}

#[test]
fn keys_that_port_answers_in_another_order_are_no_change_and_leave_a_plan_fresh() {
    let s = setup();
    assert_eq!(code(&s.run(&["apply"])), 0);
    s.change_one_queue();
    let plan_path = s.ws.path("plan.json").display().to_string();
    let planned = s.run(&["plan", "--out", &plan_path]);
    assert_eq!(code(&planned), 0, "{}", text(&planned.stderr));

    // From now on Port answers every object with its keys in reverse order.
    s.port.faults(|f| f.reverse_keys = true);
    assert!(
        s.port.entities().iter().any(|e| e.body["properties"]
            .as_object()
            .is_some_and(|p| p.len() >= 2)),
        "entities with several properties, so the order really changes"
    );
    s.port.reset_counters();
    let applied = s.run(&["apply", "--plan", &plan_path]);
    assert_eq!(code(&applied), 0, "{}", text(&applied.stderr));
    assert_eq!(
        s.port.counters().entity_writes,
        1,
        "exactly the planned update"
    );

    s.port.reset_counters();
    let again = s.run(&["apply"]);
    assert_eq!(code(&again), 0, "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).starts_with("No changes"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        s.port.counters().writes,
        0,
        "a reordered answer caused writes"
    );
}

#[test]
fn entities_another_writer_seeded_survive_every_apply() {
    let s = setup();
    assert_eq!(code(&s.run(&["apply"])), 0);
    let theirs = json!({"identifier": "hand-made-queue", "title": "made by hand", "properties": {}, "relations": {}});
    s.port.seed_entity(
        "awsSqsQueue",
        theirs.clone(),
        "port-ocean/aws-v3/0.4.0/aws-prod/exporter",
    );
    // Drop a whole account from the snapshot and confirm its deletion: only ours go.
    let before = s.ours().len();
    let mut manifest = s.ws.read_json("snapshot/manifest.json");
    manifest["accounts"]
        .as_array_mut()
        .expect("accounts")
        .retain(|a| a["Id"] != "444444444444");
    manifest["scopes"]
        .as_array_mut()
        .expect("scopes")
        .retain(|a| a["account"] != "444444444444");
    s.ws.write_json("snapshot/manifest.json", &manifest);
    let out = s.run(&["apply", "--allow-mass-delete=444444444444"]);
    assert_exit(&out, 0);
    let after = s.ours();
    assert!(after.len() < before, "nothing was deleted");
    assert!(after.iter().all(|(_, id, _)| !id.contains("444444444444")));
    let kept = s
        .port
        .entity("awsSqsQueue", "hand-made-queue")
        .expect("the foreign entity survives");
    assert_eq!(kept.datasource, "port-ocean/aws-v3/0.4.0/aws-prod/exporter");
    assert_eq!(kept.writes, 0);
}

#[test]
fn plan_never_shows_the_port_credentials() {
    let s = setup();
    let config = s.port.config();
    for args in [
        vec!["plan", "--log-level", "trace"],
        vec!["validate", "--print"],
        vec!["apply", "--log-level", "trace"],
    ] {
        let out = s.run(&args);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(config.client_secret.expose()),
            "{args:?} printed the client secret"
        );
        assert!(
            !all.contains(config.client_id.expose()),
            "{args:?} printed the client id"
        );
    }
}

/// Far above what a working apply of the demo needs, even with faults and a debug build.
const HANG_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn an_apply_through_503s_429s_and_dropped_connections_ends_like_a_clean_run() {
    let clean = setup();
    let out = clean.run_within(&["apply"], HANG_LIMIT);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let expected = clean.ours();
    assert_eq!(expected.len(), 96);

    let s = setup();
    s.port.faults(|f| {
        f.fail_every_nth_write = Some(3);
        f.burst_429 = 5;
        f.retry_after = "0".into();
        f.drop_after_commit = 3;
    });
    let out = s.run_within(&["apply", "--log-level", "debug"], HANG_LIMIT);
    assert_exit(&out, 0);
    let log = s.port.log();
    for (status, what) in [(503, "a 503"), (429, "a 429"), (0, "a dropped connection")] {
        assert!(
            log.iter().any(|l| l.status == status),
            "the stand-in never answered {what}"
        );
    }
    assert_eq!(
        s.ours(),
        expected,
        "the faulty run differs from a clean one"
    );

    // Nothing left to do, and nothing written to find that out (the faults are still on).
    s.port.reset_counters();
    let again = s.run_within(&["apply"], HANG_LIMIT);
    assert_eq!(code(&again), 0, "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).starts_with("No changes"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(s.port.counters().writes, 0);
    assert_eq!(s.ours(), expected);
}

// Crash safety: `apply` SIGKILLed at several points while it writes to Port, then run again.
// The stand-in lives in this process, so it survives the kill like Port would.

const FLEET_ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];

/// Two blueprints that relate to each other, so that bootstrap creates both without relations
/// first and adds them after: a kill in between leaves blueprints that lack their relations.
const FLEET_BLUEPRINTS: &str = r#"[
  {"identifier": "crashAccount", "title": "Account", "schema": {"properties": {"name": {"type": "string"}}},
   "relations": {"mainQueue": {"target": "crashQueue", "many": false, "required": false}}},
  {"identifier": "crashQueue", "title": "Queue", "schema": {"properties": {"retention": {"type": "number"}}},
   "relations": {"owner": {"target": "crashAccount", "many": false, "required": false}}}
]"#;

/// The fleet's queues in `crashQueue` with their retention, and `relations` (name, jq expression).
fn fleet_mapping(relations: &[(&str, &str)]) -> String {
    let queues = QueueResource {
        blueprint: "crashQueue",
        select_all: true,
        properties: &[RETENTION],
        relations,
    };
    fixtures::mapping(&[&queues.yaml()])
}

/// What the snapshot holds per account: queue numbers and their retention.
type Queues = Vec<(usize, u64)>;

/// The stand-in's blueprints, and its entities as (blueprint, identifier, body, `$datasource`).
type CatalogState = (Vec<Json>, Vec<(String, String, Json, String)>);

/// A snapshot of SQS queues in two accounts with a small mapping, synced into one stand-in.
struct Fleet {
    ws: Workspace,
    port: PortStandIn,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet::with_mapping(&fleet_mapping(&[]))
    }

    /// The fleet's snapshot and blueprints with another mapping file.
    fn with_mapping(mapping: &str) -> Fleet {
        let ws = Workspace::new();
        let port = PortStandIn::start_in_thread();
        let write = |rel: &str, text: &str| ws.write(rel, text);
        write("client-secret", port.config().client_secret.expose());
        write(
            "tidemark.yaml",
            &format!(
                "integration: {{identifier: crash}}\nsource: {{type: snapshot, path: snap}}\nmappings: [mappings/queues.yaml]\ncatalog:\n  type: port\n  baseUrl: {}\n  clientId: ${{TEST_PORT_CLIENT_ID}}\n  clientSecretFile: client-secret\n",
                port.url()
            ),
        );
        write("mappings/queues.yaml", mapping);
        write("mappings/blueprints.json", FLEET_BLUEPRINTS);
        let accounts = FLEET_ACCOUNTS.map(|id| (id, id));
        write(
            "snap/manifest.json",
            &fixtures::queue_manifest(&accounts).to_string(),
        );
        Fleet { ws, port }
    }

    /// Replaces every account's queues.
    fn set_queues(&self, queues: &Queues) {
        for account in FLEET_ACCOUNTS {
            let items: Vec<Json> = queues
                .iter()
                .map(|(n, retention)| {
                    let queue = fixtures::sqs_queue(account, "us-east-1", &format!("q{n}"));
                    fixtures::retained(queue, *retention)
                })
                .collect();
            self.ws.write(
                &format!("snap/{account}/us-east-1/AWS_SQS_Queue.json"),
                &Json::Array(items).to_string(),
            );
        }
    }

    fn command(&self) -> Command {
        port_command(&self.ws, &self.port, &["apply", "--allow-mass-delete"])
    }

    fn apply(&self) -> Output {
        self.command().output().expect("run tidemark")
    }

    /// Starts an apply and SIGKILLs it once the stand-in has seen `writes` write requests.
    /// Returns whether it was still running when killed.
    fn apply_killed_after(&self, writes: usize) -> bool {
        self.port.reset_counters();
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let deadline = Instant::now() + HANG_LIMIT;
        loop {
            if child.try_wait().expect("wait").is_some() {
                return false;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("apply neither finished nor reached write {writes} within {HANG_LIMIT:?}");
            }
            if self.port.counters().writes >= writes {
                // SIGKILL: no destructor or cleanup of tidemark's runs.
                let _ = child.kill();
                let _ = child.wait();
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Blueprints and every entity in the stand-in, with their owners, in a comparable order.
    /// Keyed by (blueprint, identifier) as Port is, so a duplicate would show as a changed body
    /// or an extra entity under another key.
    fn catalog(&self) -> CatalogState {
        let blueprints = ["crashAccount", "crashQueue"]
            .iter()
            .filter_map(|id| self.port.blueprint(id))
            .collect();
        let mut entities = self.port.state();
        entities.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        (blueprints, entities)
    }
}

/// The first sync: 300 queues per account.
fn before() -> Queues {
    (0..300).map(|n| (n, 345_600)).collect()
}

/// The next sync: the first 40 queues gone, every other one of the rest changed, 150 new.
fn after() -> Queues {
    (40..450)
        .map(|n| (n, if n % 2 == 0 { 86_400 } else { 345_600 }))
        .collect()
}

/// Runs `apply` to completion and checks it succeeded.
fn applied(fleet: &Fleet, why: &str) {
    let out = fleet.apply();
    assert_eq!(
        code(&out),
        0,
        "{why}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// After a killed apply: one apply finishes the job, and the next one finds nothing to do.
fn assert_recovers_to(fleet: &Fleet, expected: &CatalogState, why: &str) {
    applied(fleet, &format!("the rerun {why}"));
    let got = fleet.catalog();
    assert_eq!(got.0, expected.0, "blueprints differ {why}");
    assert_eq!(got.1.len(), expected.1.len(), "entity count {why}");
    assert_eq!(got.1, expected.1, "entities differ {why}");
    fleet.port.reset_counters();
    let out = fleet.apply();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("No changes"),
        "a third apply {why} still had work: {}",
        text(&out.stdout)
    );
    assert_eq!(fleet.port.counters().writes, 0, "writes in a no-op {why}");
}

#[test]
fn a_port_apply_killed_at_several_points_then_rerun_ends_like_a_clean_run() {
    // The clean runs: a first sync, then a sync with creates, updates and deletes.
    let clean = Fleet::new();
    clean.set_queues(&before());
    clean.port.reset_counters();
    applied(&clean, "clean first sync");
    let first_writes = clean.port.counters().writes;
    let expected_first = clean.catalog();
    assert_eq!(expected_first.1.len(), 600);
    clean.set_queues(&after());
    clean.port.reset_counters();
    applied(&clean, "clean second sync");
    let second_writes = clean.port.counters().writes;
    let expected_second = clean.catalog();
    assert_eq!(expected_second.1.len(), 2 * 410);

    // Kill points in write requests: inside the blueprint bootstrap (two creates without
    // relations, then two patches), and spread over the entity writes.
    let mut first_points = vec![1, 2, 3];
    first_points.extend([first_writes / 3, 2 * first_writes / 3, first_writes - 1]);
    for point in first_points {
        let fleet = Fleet::new();
        fleet.port.faults(|f| f.latency = Duration::from_millis(15));
        fleet.set_queues(&before());
        let killed = fleet.apply_killed_after(point);
        assert!(killed, "the first sync ended before write {point}");
        assert_recovers_to(
            &fleet,
            &expected_first,
            &format!("after a kill at write {point} of a first sync"),
        );
    }

    // The second sync sends its upserts, then its deletes last: the final point lands in them.
    for point in [1, second_writes / 2, second_writes - 1] {
        let fleet = Fleet::new();
        fleet.set_queues(&before());
        applied(&fleet, "first sync");
        fleet.port.faults(|f| f.latency = Duration::from_millis(15));
        fleet.set_queues(&after());
        let killed = fleet.apply_killed_after(point);
        assert!(killed, "the second sync ended before write {point}");
        assert_recovers_to(
            &fleet,
            &expected_second,
            &format!("after a kill at write {point} of a second sync"),
        );
    }
}

// Hostile Port answers through the binary: each stops the apply with exit 1 and a message that
// says what was wrong, deletes nothing it was not sure of, and a later apply with an honest Port
// ends like a clean run.

/// Where the stand-in misbehaves.
#[derive(Clone, Copy, Debug)]
enum Route {
    Search,
    Listing,
    BulkUpsert,
    BulkDelete,
}

#[test]
fn hostile_port_answers_stop_apply_with_a_clear_error_and_delete_nothing_unconfirmed() {
    let small_before: Queues = (0..30).map(|n| (n, 345_600)).collect();
    let small_after: Queues = (5..45)
        .map(|n| (n, if n % 2 == 0 { 86_400 } else { 345_600 }))
        .collect();
    let clean = Fleet::new();
    clean.set_queues(&small_before);
    applied(&clean, "clean first sync");
    clean.set_queues(&small_after);
    applied(&clean, "clean second sync");
    let expected = clean.catalog();

    let stale = |fleet: &Fleet| {
        fleet
            .port
            .entities()
            .iter()
            .filter(|e| e.identifier.ends_with(":q0"))
            .count()
    };
    for (route, hostile, message) in [
        (Route::Search, Hostile::Html, "not valid JSON"),
        (Route::Search, Hostile::Truncated, "not valid JSON"),
        (Route::Search, Hostile::NotOk, "ok is false"),
        (Route::Search, Hostile::OtherBlueprint, "someOtherBlueprint"),
        (Route::Search, Hostile::CursorLoop, "a second time"),
        (Route::Listing, Hostile::Html, "not valid JSON"),
        (Route::Listing, Hostile::CursorLoop, "a second time"),
        (Route::BulkUpsert, Hostile::BadIndexes, "index"),
        (Route::BulkUpsert, Hostile::NotOk, "ok is false"),
        (Route::BulkDelete, Hostile::Truncated, "not valid JSON"),
        (Route::BulkDelete, Hostile::BadIndexes, "never-sent"),
    ] {
        let case = format!("{hostile:?} from {route:?}");
        let fleet = Fleet::new();
        fleet.set_queues(&small_before);
        applied(&fleet, "first sync");
        let before = fleet.catalog();
        assert_eq!(stale(&fleet), 2, "{case}");
        fleet.set_queues(&small_after);
        fleet.port.faults(|f| {
            let slot = match route {
                Route::Search => &mut f.hostile_search,
                Route::Listing => &mut f.hostile_listing,
                Route::BulkUpsert => &mut f.hostile_bulk,
                Route::BulkDelete => &mut f.hostile_delete,
            };
            *slot = Some(hostile);
        });
        let out = fleet.command().output().expect("run tidemark");
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), 1, "{case}: {}\n{stderr}", text(&out.stdout));
        assert!(stderr.contains(message), "{case}: {stderr}");
        match route {
            // A read that cannot be trusted stops before any write.
            Route::Search | Route::Listing => {
                assert_eq!(fleet.catalog(), before, "{case} changed the catalog");
            }
            // Deletes go last and only after every upsert was confirmed.
            Route::BulkUpsert => assert_eq!(stale(&fleet), 2, "{case} deleted"),
            // A truncated answer comes before the stand-in deletes; the one naming a foreign
            // identifier after. Either way tidemark reports no delete it cannot vouch for.
            Route::BulkDelete => {
                if hostile == Hostile::Truncated {
                    assert_eq!(stale(&fleet), 2, "{case} deleted");
                }
            }
        }
        if matches!(route, Route::BulkUpsert | Route::BulkDelete) {
            let stdout = text(&out.stdout);
            assert!(
                stdout.contains(", 0 deleted,") && stdout.contains("Stopped before finishing"),
                "{case}: {stdout}"
            );
        }

        fleet.port.faults(|f| {
            f.hostile_search = None;
            f.hostile_listing = None;
            f.hostile_bulk = None;
            f.hostile_delete = None;
        });
        assert_recovers_to(&fleet, &expected, &format!("after {case}"));
    }
}

#[test]
fn a_207_that_says_ok_false_records_what_was_written_and_the_next_run_retries_only_the_rejected() {
    let fleet = Fleet::new();
    fleet.set_queues(&(0..20).map(|n| (n, 345_600)).collect());
    fleet
        .port
        .faults(|f| f.reject_in_next_bulk = Some(("crashQueue".into(), 1)));
    let first = fleet.apply();
    let out = text(&first.stdout);
    assert_eq!(code(&first), 3, "{out}\n{}", text(&first.stderr));
    assert!(out.contains("1 rejected"), "{out}");
    assert!(out.contains("rejected by fault injection"), "{out}");
    assert!(
        fleet
            .port
            .log()
            .iter()
            .any(|l| l.status == 207 && l.path.contains("/crashQueue/")),
        "the stand-in answered 207"
    );
    let queues = |fleet: &Fleet| {
        fleet
            .port
            .entities()
            .iter()
            .filter(|e| e.blueprint == "crashQueue")
            .count()
    };
    assert_eq!(
        queues(&fleet),
        39,
        "the 19 of the partial bulk and the other account's 20"
    );

    fleet.port.reset_counters();
    let second = fleet.apply();
    assert_eq!(code(&second), 0, "{}", text(&second.stderr));
    assert_eq!(
        fleet.port.counters().entity_writes,
        1,
        "only the rejected one"
    );
    assert_eq!(queues(&fleet), 40);
}

/// Queues related to their account, written without merge: every property Port returns that the
/// mapping does not produce would count as a change.
fn related_replace_mapping() -> String {
    format!(
        "enableMergeEntity: false\n{}",
        fleet_mapping(&[("owner", ".__AccountId")])
    )
}

#[test]
fn calculated_mirror_and_aggregation_properties_in_port_answers_cost_no_write() {
    let fleet = Fleet::with_mapping(&related_replace_mapping());
    fleet.set_queues(&(0..5).map(|n| (n, 345_600)).collect());
    applied(&fleet, "first sync");
    // Port computes these and returns them under `properties` in every search answer.
    let mut queue = fleet.port.blueprint("crashQueue").expect("crashQueue");
    queue["mirrorProperties"] = json!({"ownerId": {"path": "owner.$identifier"}});
    queue["calculationProperties"] = json!({"label": {"calculation": ".title", "type": "string"}});
    fleet.port.add_blueprint(queue);
    let mut account = fleet.port.blueprint("crashAccount").expect("crashAccount");
    account["aggregationProperties"] = json!({"queues": {"title": "Queues", "target": "crashQueue",
        "calculationSpec": {"func": "count", "calculationBy": "entities"}}});
    fleet.port.add_blueprint(account);
    // Asking for the blueprint's own fields leaves them out; a Port that sends them anyway must
    // not cause writes either.
    fleet.port.faults(|f| f.ignore_include = true);

    fleet.port.reset_counters();
    let plan = port_command(&fleet.ws, &fleet.port, &["plan", "--format", "json"])
        .output()
        .expect("plan");
    assert_eq!(code(&plan), 0, "{}", text(&plan.stderr));
    let plan: Json = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(plan["summary"]["update"], 0, "{}", plan["changes"]);
    let again = fleet.apply();
    assert_eq!(code(&again), 0, "{}", text(&again.stderr));
    assert_eq!(fleet.port.counters().writes, 0);
}

#[test]
fn a_foreign_entity_related_to_an_owned_one_withholds_its_delete() {
    let fleet = Fleet::with_mapping(&related_replace_mapping());
    fleet.set_queues(&(0..5).map(|n| (n, 345_600)).collect());
    applied(&fleet, "first sync");
    // Another tool's entity points at one of our queues through a relation.
    let mut queue = fleet.port.blueprint("crashQueue").expect("crashQueue");
    queue["relations"]["deadLetter"] =
        json!({"target": "crashQueue", "many": false, "required": false});
    fleet.port.add_blueprint(queue);
    let doomed = "arn:aws:sqs:us-east-1:111111111111:q4";
    fleet.port.seed_entity(
        "crashQueue",
        json!({"identifier": "someone-elses-queue", "title": "theirs",
               "relations": {"deadLetter": doomed}}),
        "other-tool/1.0",
    );
    fleet.set_queues(&(0..4).map(|n| (n, 345_600)).collect());

    let plan = port_command(&fleet.ws, &fleet.port, &["plan", "--format", "json"])
        .output()
        .expect("plan");
    assert_eq!(code(&plan), 3, "{}", text(&plan.stderr));
    let plan: Json = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let withheld = withheld(&plan);
    assert_eq!(withheld, vec![(doomed, "foreign_dependents")]);
    let applied = fleet.apply();
    assert_eq!(code(&applied), 3, "{}", text(&applied.stderr));
    assert!(fleet.port.entity("crashQueue", doomed).is_some(), "kept");
}

#[test]
fn validate_catalog_runs_every_read_and_reports_them_accepted() {
    let s = setup();
    // Before the first apply the blueprints do not exist yet; blueprints.json defines them.
    let before = s.run(&["validate", "--catalog"]);
    let out = text(&before.stdout);
    assert_eq!(code(&before), 0, "{out}\n{}", text(&before.stderr));
    assert!(
        out.contains("apply creates it from blueprints.json"),
        "{out}"
    );
    assert_eq!(s.port.counters().writes, 0, "validate writes nothing");

    assert_eq!(code(&s.run(&["apply"])), 0);
    s.port.reset_counters();
    let after = s.run(&["validate", "--catalog"]);
    let out = text(&after.stdout);
    assert_eq!(code(&after), 0, "{out}\n{}", text(&after.stderr));
    assert!(out.contains("Every read was accepted."), "{out}");
    assert!(
        !out.contains("refused") && !out.contains("missing"),
        "{out}"
    );
    for read in [
        "search of owned entities",
        "search by identifier",
        "relate to it through account",
        "ownership listing",
    ] {
        assert!(out.contains(read), "{read} is checked: {out}");
    }
    assert_eq!(s.port.counters().writes, 0, "validate writes nothing");
}

#[test]
fn validate_catalog_names_a_mapped_blueprint_that_exists_nowhere() {
    let s = setup();
    s.ws.write(
        "mappings/extra.yaml",
        "resources:\n  - kind: AWS::SQS::Queue\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"nosuchQueue\"'\n",
    );
    let config = std::fs::read_to_string(s.ws.path("tidemark.yaml")).expect("config");
    s.ws.write(
        "tidemark.yaml",
        &format!("{config}mappings: [builtin:aws, mappings/extra.yaml]\n"),
    );
    let out = s.run(&["validate", "--catalog"]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("nosuchQueue") && stdout.contains("no blueprints.json defines it"),
        "{stdout}"
    );
}

#[test]
fn with_port_unreachable_plan_fails_within_half_a_minute_naming_the_cause() {
    let s = setup();
    // A port nothing listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let config = std::fs::read_to_string(s.ws.path("tidemark.yaml")).expect("config");
    s.ws.write(
        "tidemark.yaml",
        &config.replace(s.port.url(), &format!("http://{closed}")),
    );
    let started = Instant::now();
    let out = s.run_within(&["plan"], Duration::from_secs(45));
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(45));
    assert!(err.contains("connection refused"), "{err}");
    assert!(
        err.contains("WARN") && err.contains("retrying"),
        "retries are logged: {err}"
    );
}

#[test]
fn search_relations_are_resolved_by_a_port_search_and_a_stable_answer_costs_no_write() {
    let ws = Workspace::new();
    let port = PortStandIn::start_in_thread();
    ws.write("client-secret", port.config().client_secret.expose());
    fixtures::write_search_workspace(
        &|rel, text| ws.write(rel, text),
        &format!(
            "  type: port\n  baseUrl: {}\n  clientId: ${{TEST_PORT_CLIENT_ID}}\n  clientSecretFile: client-secret\n",
            port.url()
        ),
    );
    let blueprints: Vec<Json> = serde_json::from_str(
        &std::fs::read_to_string(ws.path("mappings/blueprints.json")).expect("read"),
    )
    .expect("json");
    port.add_blueprint(blueprints[0].clone());
    for team in fixtures::search_teams() {
        port.seed_entity("team", team, "people-tool/1.0");
    }
    let plan = port_command(&ws, &port, &["plan", "--format", "json"])
        .output()
        .expect("plan");
    let parsed: Json = serde_json::from_slice(&plan.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&plan.stderr)));
    fixtures::assert_first_search_plan(code(&plan), &parsed);
    // The search went to Port as a blueprint search with the mapping's rule.
    assert!(
        port.log()
            .iter()
            .any(|l| l.path == "/v1/blueprints/team/entities/search"
                && l.body["query"]["rules"][0]
                    == json!({"property": "lead", "operator": "=", "value": "q0@example.com"}))
    );

    let first = port_command(&ws, &port, &["apply"])
        .output()
        .expect("apply");
    assert_eq!(code(&first), 3, "{}", text(&first.stderr));
    assert_eq!(
        port.entity("queue", &fixtures::search_queue(0))
            .expect("q0 written")
            .body["relations"]["ownerTeam"],
        "t-alpha"
    );
    port.reset_counters();
    let again = port_command(&ws, &port, &["apply"])
        .output()
        .expect("apply");
    assert_eq!(code(&again), 3, "still the q2 mapping error");
    assert_eq!(
        port.counters().writes,
        0,
        "a stable search result costs no write"
    );
}
