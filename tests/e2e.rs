//! End-to-end tests: the real `tidemark` binary on the demo and on purpose-built snapshots, with
//! the local SQLite catalog. Each test works in its own temp dir.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/fixtures.rs"]
mod fixtures;

use cli::{Workspace, assert_exit, code, plan_account, text};
use fixtures::{REGION, RETENTION};
use serde_json::{Value as Json, json};

const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";

/// The demo, copied so the test can change it.
fn demo() -> Workspace {
    Workspace::copy_of("examples/demo")
}

/// Accounts, and queues with their region and retention: (mapping, blueprints).
fn mapping_and_blueprints() -> (String, String) {
    fixtures::accounts_and_queues(true, &[(REGION, "string"), (RETENTION, "number")])
}

fn queue_mapping() -> String {
    mapping_and_blueprints().0
}

fn blueprints() -> String {
    mapping_and_blueprints().1
}

fn queue(account: &str, region: &str, name: &str) -> Json {
    fixtures::retained(fixtures::sqs_queue(account, region, name), 345600)
}

/// Two accounts, one region, four queues each, with a small custom mapping.
fn small() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "tidemark.yaml",
        &fixtures::snapshot_config("e2e", "[mappings/queues.yaml]"),
    );
    ws.write("mappings/queues.yaml", &queue_mapping());
    ws.write("mappings/blueprints.json", &blueprints());
    fixtures::write_queue_snapshot(
        &|rel, text| ws.write(rel, text),
        &[(PROD, "prod"), (STAGING, "staging")],
        &|account| {
            (0..4)
                .map(|i| queue(account, "us-east-1", &format!("q{i}")))
                .collect()
        },
    );
    ws
}

fn edit_queues(ws: &Workspace, account: &str, edit: impl FnOnce(&mut Vec<Json>)) {
    let rel = format!("snap/{account}/us-east-1/AWS_SQS_Queue.json");
    let mut queues: Vec<Json> = serde_json::from_value(ws.read_json(&rel)).expect("array");
    edit(&mut queues);
    ws.write_json(&rel, &Json::Array(queues));
}

fn edit_manifest(ws: &Workspace, edit: impl FnOnce(&mut Json)) {
    let mut manifest = ws.read_json("snap/manifest.json");
    edit(&mut manifest);
    ws.write_json("snap/manifest.json", &manifest);
}

fn summary(plan: &Json) -> Json {
    plan["summary"].clone()
}

fn reasons(plan: &Json) -> Vec<(String, String)> {
    cli::withheld(plan)
        .into_iter()
        .map(|(identifier, reason)| (identifier.to_string(), reason.to_string()))
        .collect()
}

/// Runs git in `dir`, failing the test on an error.
fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

#[test]
fn a_copied_example_leaves_the_state_a_users_run_left_behind() {
    // A repository shaped like this one: an example folder with a tracked config and snapshot,
    // and the local catalog a run of the README's first command leaves in it (ignored).
    let repo = tempfile::tempdir().expect("tempdir");
    let root = repo.path();
    git(root, &["init", "-q"]);
    std::fs::write(root.join(".gitignore"), ".tidemark/\n").expect("write");
    std::fs::create_dir_all(root.join("examples/demo/snapshot")).expect("mkdir");
    std::fs::write(root.join("examples/demo/tidemark.yaml"), "config").expect("write");
    std::fs::write(root.join("examples/demo/snapshot/manifest.json"), "{}").expect("write");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "example"]);
    std::fs::create_dir_all(root.join("examples/demo/.tidemark")).expect("mkdir");
    std::fs::write(root.join("examples/demo/.tidemark/catalog.db"), "state").expect("write");
    std::fs::write(root.join("examples/demo/notes.txt"), "untracked").expect("write");

    let ws = Workspace::new();
    cli::copy_tracked(root, "examples/demo", ws.dir.path());

    assert!(ws.path("tidemark.yaml").exists());
    assert!(ws.path("snapshot/manifest.json").exists());
    assert!(
        !ws.path(".tidemark").exists(),
        "the example's local catalog leaked into the test workspace"
    );
    assert!(!ws.path("notes.txt").exists(), "an untracked file leaked");
}

#[test]
fn the_demo_workspace_starts_without_a_local_catalog() {
    // Whatever the README's first command left in examples/demo, a test's copy starts empty.
    let ws = demo();
    assert!(ws.path("tidemark.yaml").exists());
    assert!(!ws.path(".tidemark").exists());
}

#[test]
fn the_demo_applies_everything_and_a_second_apply_writes_nothing() {
    let ws = demo();
    let first = ws.apply(&[]);
    assert_exit(&first, 0);
    assert!(
        text(&first.stdout).contains("Applied:"),
        "{}",
        text(&first.stdout)
    );
    let entities = ws.entities();
    assert!(entities.len() >= 90, "only {} entities", entities.len());
    assert!(
        entities
            .iter()
            .any(|e| e["blueprint"] == "awsAccount" && e["identifier"] == PROD)
    );

    let second = ws.apply(&[]);
    assert_eq!(code(&second), 0, "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).starts_with("No changes"),
        "{}",
        text(&second.stdout)
    );
    assert!(!text(&second.stdout).contains("Applied:"));
    assert_eq!(
        ws.entities(),
        entities,
        "the second apply changed the catalog"
    );
}

#[test]
fn the_demo_never_maps_secret_environment_values() {
    let ws = demo();
    assert_eq!(code(&ws.apply(&[])), 0);
    let db = std::fs::read(ws.path(".tidemark/catalog.db")).expect("catalog file");
    assert!(!String::from_utf8_lossy(&db).contains("do-not-map-me"));
}

#[test]
fn a_changed_property_is_exactly_one_update() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_queues(&ws, PROD, |q| {
        q[1]["Properties"]["MessageRetentionPeriod"] = json!(60)
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 0);
    assert_eq!(
        summary(&plan),
        json!({"create": 0, "update": 1, "delete": 0, "unchanged": 9, "withheld": 0})
    );
    assert_eq!(
        plan["changes"][0]["identifier"],
        "arn:aws:sqs:us-east-1:222222222222:q1"
    );
    assert_eq!(
        plan["changes"][0]["before"]["properties"]["retention"],
        345600
    );
    assert_eq!(plan["changes"][0]["after"]["properties"]["retention"], 60);
    let (exit, _) = ws.plan(&["--detailed-exitcode"]);
    assert_eq!(exit, 2);
    assert_eq!(code(&ws.apply(&[])), 0);
    let (exit, plan) = ws.plan(&["--detailed-exitcode"]);
    assert_eq!((exit, summary(&plan)["update"].clone()), (0, json!(0)));
}

#[test]
fn a_removed_resource_is_exactly_one_delete() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_queues(&ws, STAGING, |q| {
        q.remove(3);
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 0);
    assert_eq!(
        summary(&plan),
        json!({"create": 0, "update": 0, "delete": 1, "unchanged": 9, "withheld": 0})
    );
    assert_eq!(plan["changes"][0]["action"], "delete");
    assert_eq!(plan["changes"][0]["account"], STAGING);
    let out = ws.apply(&[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(ws.entities().len(), 9);
}

#[test]
fn a_failed_scope_in_the_manifest_withholds_exactly_its_deletes() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    // Both accounts lose a queue, but only prod's listing failed.
    edit_queues(&ws, PROD, |q| {
        q.remove(0);
    });
    edit_queues(&ws, STAGING, |q| {
        q.remove(0);
    });
    edit_manifest(&ws, |m| {
        m["scopes"][0]["status"] = json!("failed");
        m["scopes"][0]["error"] =
            json!("AccessDeniedException: not authorized to perform cloudformation:ListResources");
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3);
    // prod's whole queue listing failed, so none of its 4 queues may be deleted; staging's 1 goes.
    assert_eq!(summary(&plan)["delete"], 1);
    assert_eq!(plan["changes"][0]["account"], STAGING);
    let withheld = reasons(&plan);
    assert_eq!(withheld.len(), 4, "{withheld:?}");
    assert!(withheld.iter().all(|(_, r)| r == "scope_failed"));
    assert_eq!(plan["scopes"][0]["kind"], "AWS::SQS::Queue");
    assert_eq!(plan["scopes"][0]["status"], "failed");
    let out = ws.apply(&[]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert_eq!(ws.entities().len(), 9);
}

#[test]
fn an_unassumable_account_keeps_its_entities_and_exits_3() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_manifest(&ws, |m| {
        m["accounts"][1]["assumed"] = json!(false);
        m["accounts"][1]["error"] =
            json!("AccessDenied: check the role's trust policy and the ExternalId");
        m["scopes"].as_array_mut().expect("scopes").remove(1);
    });
    std::fs::remove_dir_all(ws.path(&format!("snap/{STAGING}"))).expect("rm");
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3);
    assert_eq!(summary(&plan)["delete"], 0);
    let withheld = reasons(&plan);
    assert_eq!(withheld.len(), 4, "{withheld:?}");
    assert!(withheld.iter().all(|(_, r)| r == "account_unassumable"));
    let account = plan_account(&plan, STAGING);
    assert_eq!(account["status"], "unassumable");
    assert_eq!(code(&ws.apply(&[])), 3);
    assert_eq!(ws.entities().len(), 10);
}

#[test]
fn a_mapping_error_skips_the_item_and_withholds_its_scopes_deletes() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_queues(&ws, PROD, |q| {
        q[0]["Properties"]
            .as_object_mut()
            .expect("props")
            .remove("Arn");
        q.remove(3);
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3);
    assert_eq!(plan["mapping_errors"].as_array().map(Vec::len), Some(1));
    assert!(
        plan["mapping_errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("identifier")
    );
    assert_eq!(
        plan["mapping_errors"][0]["item"],
        "https://sqs.us-east-1.amazonaws.com/222222222222/q0"
    );
    assert_eq!(summary(&plan)["delete"], 0);
    assert_eq!(reasons(&plan).len(), 2, "{:?}", reasons(&plan));
    assert!(reasons(&plan).iter().all(|(_, r)| r == "mapping_error"));
}

#[test]
fn a_stale_plan_file_is_refused() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_queues(&ws, PROD, |q| {
        q[1]["Properties"]["MessageRetentionPeriod"] = json!(60)
    });
    let plan_path = ws.path("plan.json").display().to_string();
    let (exit, _) = ws.plan(&["--out", &plan_path]);
    assert_eq!(exit, 0);
    // Someone applies first: the saved plan no longer describes the catalog.
    edit_queues(&ws, PROD, |q| {
        q[2]["Properties"]["MessageRetentionPeriod"] = json!(61)
    });
    assert_eq!(code(&ws.apply(&[])), 0);
    let out = ws.apply(&["--plan", &plan_path]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("stale"), "{}", text(&out.stderr));
}

#[test]
fn a_fresh_plan_file_applies_exactly_and_refuses_guard_flags() {
    let ws = small();
    let plan_path = ws.path("plan.json").display().to_string();
    let (exit, _) = ws.plan(&["--out", &plan_path]);
    assert_eq!(exit, 0);
    let out = ws.apply(&["--plan", &plan_path, "--adopt"]);
    assert_eq!(code(&out), 1);
    let out = ws.apply(&["--plan", &plan_path]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(ws.entities().len(), 10);
}

#[test]
fn removing_an_account_needs_a_confirmed_mass_delete() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    edit_manifest(&ws, |m| {
        m["accounts"].as_array_mut().expect("accounts").remove(1);
        m["scopes"].as_array_mut().expect("scopes").remove(1);
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3);
    assert!(
        reasons(&plan).iter().all(|(_, r)| r == "all_entities"),
        "{:?}",
        reasons(&plan)
    );
    assert_eq!(reasons(&plan).len(), 5);
    let out = ws.apply(&[&format!("--allow-mass-delete={STAGING}")]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert_eq!(ws.entities().len(), 5);
}

#[test]
fn validate_reports_every_broken_file_with_positions_and_nothing_runs() {
    let ws = small();
    ws.write(
        "tidemark.yaml",
        "integration: {identifier: e2e}\nsource: {type: snapshot, path: snap}\ncatalog: {type: local}\nmappings: [mappings]\nresynk: {interval: 1h}\n",
    );
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace(
            ".Properties.QueueName",
            ".Properties.QueueName | ascii_downcase(",
        ),
    );
    ws.write(
        "mappings/broken.yaml",
        "resources:\n  - kind: AWS::S3::Bucket\n    port: [unclosed\n",
    );
    let config = ws.config();
    let out = ws.run(&["validate", "-c", &config]);
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tidemark.yaml:5:1: unknown key resynk"),
        "{stderr}"
    );
    assert!(stderr.contains("queues.yaml:"), "{stderr}");
    assert!(stderr.contains("broken.yaml:"), "{stderr}");
    for line in stderr.lines().filter(|l| l.starts_with("error:")) {
        let location = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            location.split(':').count() >= 4,
            "no file:line:col in {line}"
        );
    }
    for command in ["plan", "apply"] {
        let out = ws.run(&[command, "-c", &config]);
        assert_eq!(code(&out), 1, "{command}");
    }
    assert!(
        !ws.path(".tidemark/catalog.db").exists(),
        "a broken config wrote to the catalog"
    );
}

#[test]
fn validate_passes_on_the_demo_and_prints_secrets_masked() {
    let ws = demo();
    let out = ws.run(&["validate", "-c", &ws.config()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = ws.run(&["validate", "-c", &ws.config(), "--print"]);
    assert_eq!(code(&out), 0);
    assert!(
        text(&out.stdout).contains("identifier: demo"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_create_over_another_owners_entity_is_withheld_unless_adopted() {
    let ws = small();
    let catalog = tidemark::adapters::local::LocalCatalog::open(&ws.path(".tidemark/catalog.db"))
        .expect("open");
    let mut theirs =
        tidemark::core::model::Entity::new("queue", "arn:aws:sqs:us-east-1:222222222222:q0");
    theirs.title = Some(json!("theirs"));
    catalog
        .insert_blueprint(&tidemark::core::model::Blueprint(
            serde_json::from_str::<Json>(&blueprints()).expect("json")[1].clone(),
        ))
        .expect("bp");
    catalog
        .insert_foreign("port-ocean/aws-v3/1.0/aws/exporter", &theirs)
        .expect("seed");
    drop(catalog);
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3);
    assert_eq!(
        reasons(&plan),
        vec![(
            "arn:aws:sqs:us-east-1:222222222222:q0".to_string(),
            "foreign_owner".to_string()
        )]
    );
    let (exit, plan) = ws.plan(&["--adopt"]);
    assert_eq!(exit, 0);
    assert_eq!(summary(&plan)["withheld"], 0);
    assert!(
        plan["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["adopted_from"] == "port-ocean/aws-v3/1.0/aws/exporter")
    );
}

#[test]
fn markdown_and_text_plans_render() {
    let ws = small();
    let config = ws.config();
    let out = ws.run(&["plan", "-c", &config, "--format", "markdown"]);
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).contains("<details>"));
    let out = ws.run(&["plan", "-c", &config]);
    assert!(
        text(&out.stdout).starts_with("Plan: 2 blueprint changes, 10 to create"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains('\x1b'));
}

#[test]
fn hostile_identifiers_are_written_or_refused_by_ports_rule_and_a_rerun_changes_nothing() {
    let ws = small();
    let arn = |name: &str| format!("arn:aws:sqs:us-east-1:{STAGING}:{name}");
    // Port's rule admits any letter and `/ + = : @ \`; `%`, `#`, spaces, symbols such as emoji
    // and control characters are mapping errors naming the item.
    let allowed = ["path/to/q", "plus+eq=at@x", r"back\slash", "ünïcödé-q"];
    let refused = ["pct%2Fq", "hash#q", "with space", "rocket🚀", "tab\tq"];
    edit_queues(&ws, STAGING, |queues| {
        queues.clear();
        for name in allowed.iter().chain(&refused) {
            let mut q = queue(STAGING, "us-east-1", name);
            q["Properties"]["Arn"] = json!(arn(name));
            queues.push(q);
        }
    });
    let (exit, plan) = ws.plan(&[]);
    assert_eq!(exit, 3, "mapping errors make the plan partial");
    let errors = plan["mapping_errors"].as_array().expect("mapping_errors");
    assert_eq!(errors.len(), refused.len(), "{errors:?}");
    for name in refused {
        let error = errors
            .iter()
            .find(|e| e["item"] == format!("https://sqs.us-east-1.amazonaws.com/{STAGING}/{name}"))
            .unwrap_or_else(|| panic!("no mapping error names {name:?}: {errors:?}"));
        assert_eq!(error["account"], STAGING);
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not a valid Port identifier"),
            "{error}"
        );
    }

    let out = ws.apply(&[]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    let queues: Vec<String> = ws
        .entities()
        .iter()
        .filter(|e| e["blueprint"] == "queue" && e["account"] == STAGING)
        .map(|e| e["identifier"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut expected: Vec<String> = allowed.iter().map(|n| arn(n)).collect();
    expected.sort();
    let mut got = queues.clone();
    got.sort();
    assert_eq!(got, expected);

    // The identifiers round-trip: a second plan finds every written one unchanged.
    let (_, again) = ws.plan(&[]);
    assert_eq!(summary(&again)["create"], 0, "{again}");
    assert_eq!(summary(&again)["update"], 0, "{again}");
    assert_eq!(summary(&again)["delete"], 0, "{again}");
}

#[test]
fn a_usage_error_is_exit_1_never_the_changes_code_2() {
    let ws = demo();
    let config = ws.config();
    for args in [
        vec!["plan", "-c", &config, "--fromat", "json"],
        vec!["plan", "-c", &config, "--allow-mass-delete", "444444444444"],
        vec![
            "plan",
            "-c",
            &config,
            "--detailed-exitcode",
            "--format",
            "yaml",
        ],
        vec!["watch", "-c", &config, "--listen", "notanaddr"],
        vec!["frobnicate"],
    ] {
        let out = ws.run(&args);
        assert_eq!(code(&out), 1, "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("error:"), "{args:?}");
    }
    let help = ws.run(&["plan", "--help"]);
    assert_eq!(code(&help), 0);
}

#[test]
fn allowing_mass_deletes_for_an_account_with_nothing_held_back_is_warned_about() {
    let ws = small();
    assert_eq!(code(&ws.apply(&[])), 0);
    let (status, plan) = ws.plan(&["--allow-mass-delete=999999999999"]);
    assert_eq!(status, 0);
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("999999999999") && warnings.contains("nothing to confirm"),
        "{warnings}"
    );
    // Naming the account whose deletes are held back (it left the organisation) is not.
    edit_manifest(&ws, |m| {
        for list in ["accounts", "scopes"] {
            m[list]
                .as_array_mut()
                .expect(list)
                .retain(|e| e["Id"] != STAGING && e["account"] != STAGING);
        }
    });
    let (status, plan) = ws.plan(&[&format!("--allow-mass-delete={STAGING}")]);
    assert_eq!(status, 0, "{}", plan["withheld"]);
    assert_eq!(plan["summary"]["delete"], 5);
    assert!(
        !plan["warnings"].to_string().contains("nothing to confirm"),
        "{}",
        plan["warnings"]
    );
}

#[test]
fn entities_of_an_unknown_blueprint_is_an_error_naming_it() {
    let ws = demo();
    assert_eq!(code(&ws.apply(&[])), 0);
    let config = ws.config();
    let out = ws.run(&["entities", "-c", &config, "--blueprint", "nope"]);
    assert_eq!(code(&out), 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown blueprint \"nope\"") && err.contains("awsSqsQueue"),
        "{err}"
    );
    let table = ws.run(&[
        "entities",
        "-c",
        &config,
        "--blueprint",
        "awsSqsQueue",
        "--format",
        "table",
    ]);
    assert_eq!(code(&table), 0);
    let table = text(&table.stdout);
    assert!(
        table.starts_with("BLUEPRINT") && table.ends_with("12 entities\n"),
        "{table}"
    );
}

#[test]
fn reading_commands_leave_no_catalog_file_behind() {
    let ws = demo();
    let config = ws.config();
    assert_eq!(ws.plan(&[]).0, 0);
    assert_eq!(code(&ws.run(&["entities", "-c", &config])), 0);
    assert_eq!(code(&ws.run(&["validate", "-c", &config, "--catalog"])), 0);
    assert!(!ws.path(".tidemark").exists(), "a catalog file was created");
    assert_eq!(code(&ws.apply(&[])), 0);
    assert!(ws.path(".tidemark/catalog.db").exists());
}

#[test]
fn the_demos_first_plan_in_markdown_fits_a_pull_request_comment() {
    let ws = demo();
    let config = ws.config();
    let out = ws.run(&["plan", "-c", &config, "--format", "markdown"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.chars().count() <= 60_000,
        "{} characters",
        md.chars().count()
    );
    assert!(md.contains("96 to create"), "{md}");
}

#[test]
fn accounts_print_as_a_table_or_as_json() {
    let ws = demo();
    let config = ws.config();
    let table = ws.run(&["accounts", "-c", &config]);
    assert!(
        text(&table.stdout).starts_with("ACCOUNT"),
        "{}",
        text(&table.stdout)
    );
    let out = ws.run(&["accounts", "-c", &config, "--format", "json"]);
    let doc: Json = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["discovery"]["status"], "ok");
    let ids: Vec<&str> = doc["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(ids.contains(&PROD) && ids.contains(&STAGING), "{ids:?}");
    assert_eq!(code(&out), code(&table));
}

#[test]
fn missing_aws_credentials_are_one_line_with_the_fix_and_the_region_comes_from_the_config() {
    let ws = Workspace::new();
    ws.write(
        "tidemark.yaml",
        "integration: {identifier: e2e}\nsource: {type: aws, regions: [eu-west-1]}\ncatalog: {type: local}\n",
    );
    let config = ws.config();
    let mut command = ws.command(&["plan", "-c", &config]);
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        command.env_remove(var);
    }
    let out = command
        .env("HOME", ws.dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run tidemark");
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("no usable AWS credentials")
            && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(
        !err.contains("no AWS region") && !err.contains("ProviderChainError"),
        "{err}"
    );
}

#[test]
fn search_relations_are_resolved_against_the_local_catalog_and_a_stable_answer_costs_no_write() {
    let ws = Workspace::new();
    fixtures::write_search_workspace(&|rel, text| ws.write(rel, text), "  type: local\n");
    let catalog = tidemark::adapters::local::LocalCatalog::open(&ws.path(".tidemark/catalog.db"))
        .expect("open catalog");
    let team_blueprint: Json = serde_json::from_str::<Vec<Json>>(
        &std::fs::read_to_string(ws.path("mappings/blueprints.json")).expect("blueprints"),
    )
    .expect("json")[0]
        .clone();
    catalog
        .insert_blueprint(&tidemark::core::model::Blueprint(team_blueprint))
        .expect("team blueprint");
    for team in fixtures::search_teams() {
        let entity: tidemark::core::model::Entity = serde_json::from_value(
            json!({"blueprint": "team", "identifier": team["identifier"],
                "title": team["title"], "properties": team["properties"]}),
        )
        .expect("entity");
        catalog
            .insert_foreign("people-tool", &entity)
            .expect("seed team");
    }
    drop(catalog);

    let valid = ws.run(&["validate", "-c", &ws.config()]);
    assert_eq!(code(&valid), 0, "{}", text(&valid.stderr));
    let (status, plan) = ws.plan(&[]);
    fixtures::assert_first_search_plan(status, &plan);
    assert_eq!(code(&ws.apply(&[])), 3);
    let written = ws.run(&["apply", "-c", &ws.config()]);
    assert_eq!(code(&written), 3, "still the q2 mapping error");
    assert!(
        text(&written.stdout).starts_with("No changes"),
        "a stable search result is no change: {}",
        text(&written.stdout)
    );
}

#[test]
fn validate_refuses_a_constant_blueprint_that_exists_nowhere_naming_the_expression() {
    let ws = small();
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace("blueprint: '\"queue\"'", "blueprint: '\"qeueu\"'"),
    );
    let config = ws.config();
    let out = ws.run(&["validate", "-c", &config]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("mappings/queues.yaml:") && err.contains("blueprint \"qeueu\" exists neither"),
        "{err}"
    );
    assert!(
        !ws.path(".tidemark").exists(),
        "validate created the catalog"
    );
    // Once the catalog has it (another tool made it), it is fine.
    let catalog = tidemark::adapters::local::LocalCatalog::open(&ws.path(".tidemark/catalog.db"))
        .expect("open");
    catalog
        .insert_blueprint(&tidemark::core::model::Blueprint(
            json!({"identifier": "qeueu", "title": "Q", "schema": {"properties": {}}}),
        ))
        .expect("blueprint");
    drop(catalog);
    let out = ws.run(&["validate", "-c", &config]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

#[test]
fn unknown_mapping_keys_are_errors_with_a_did_you_mean_through_the_binary() {
    let ws = small();
    ws.write(
        "mappings/queues.yaml",
        &queue_mapping().replace("    selector:\n", "    selctor:\n"),
    );
    let config = ws.config();
    let out = ws.run(&["validate", "-c", &config]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("unknown key resources[1].selctor (did you mean resources[1].selector?)"),
        "{err}"
    );
}

/// The subcommands a user types, which every completion script and the man page must offer.
const SUBCOMMANDS: [&str; 10] = [
    "plan",
    "apply",
    "watch",
    "validate",
    "map",
    "accounts",
    "snapshot",
    "entities",
    "completions",
    "man",
];

#[test]
fn completions_for_each_shell_offer_every_subcommand_and_hide_the_worker() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = ws.run(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        // Flags of a subcommand come from the same definitions as --help.
        assert!(script.contains("detailed-exitcode"), "{shell}");
        assert!(
            !script.contains("__map-worker"),
            "{shell} completes the hidden worker"
        );
    }
}

#[test]
fn bash_completions_are_a_valid_bash_script() {
    let ws = Workspace::new();
    let out = ws.run(&["completions", "bash"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    ws.write("tidemark.bash", &text(&out.stdout));
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(ws.path("tidemark.bash"))
        .output()
        .expect("run bash -n");
    assert!(checked.status.success(), "{}", text(&checked.stderr));
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let out = Workspace::new().run(&["completions", "tcsh"]);
    assert_ne!(code(&out), 0);
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("tcsh"), "{}", text(&out.stderr));
}

#[test]
fn man_page_is_roff_generated_from_the_same_definitions_as_help() {
    let out = Workspace::new().run(&["man"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH tidemark 1"), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    assert!(!page.contains("__map-worker"));
    assert!(page.contains("Exit codes"), "the after-help is in the page");
}

#[test]
fn man_out_dir_writes_a_page_for_every_subcommand_it_refers_to() {
    let ws = Workspace::new();
    let dir = ws.path("man1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = ws.run(&["man", "--out-dir", &dir.display().to_string()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let main = std::fs::read_to_string(dir.join("tidemark.1")).expect("tidemark.1");
    for sub in SUBCOMMANDS {
        let page = std::fs::read_to_string(dir.join(format!("tidemark-{sub}.1")))
            .unwrap_or_else(|e| panic!("tidemark-{sub}.1: {e}"));
        assert!(page.contains(&format!(".TH tidemark-{sub} 1")), "{page}");
        assert!(
            main.contains(&format!("tidemark\\-{sub}(1)")),
            "tidemark.1 does not refer to {sub}"
        );
    }
    assert!(!dir.join("tidemark-__map-worker.1").exists());
    assert!(!dir.join("tidemark-help.1").exists());
    // The plan page documents the plan flags.
    let plan = std::fs::read_to_string(dir.join("tidemark-plan.1")).expect("plan page");
    assert!(plan.contains("detailed\\-exitcode"), "{plan}");
}
