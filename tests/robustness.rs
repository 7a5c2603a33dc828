//! Robustness: a runaway jq expression ends a one-shot command with exit 1 naming the item and
//! the expression, and nothing is applied. The real `tidemark` binary on a small snapshot with
//! the local SQLite catalog; each test works in its own temp dir.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::process::{Command, Output};

use cli::{Workspace, code, text};
use fixtures::{QueueResource, RETENTION};
use serde_json::{Value as Json, json};

const PROD: &str = "222222222222";
/// Loops forever in jaq without growing the stack, for one queue only.
const RUNAWAY: &str = "last(repeat(1))";
/// Low so that the tests spend little time waiting for the limit.
const TEST_LIMIT_MS: &str = "300";

/// `tidemark args…` in `ws` with the test's evaluation limit.
fn command(ws: &Workspace, args: &[&str]) -> Command {
    let mut command = ws.command(args);
    command.env("TIDEMARK_EVAL_TIMEOUT_MS", TEST_LIMIT_MS);
    command
}

fn run(ws: &Workspace, args: &[&str]) -> Output {
    command(ws, args).output().expect("run tidemark")
}

fn blueprints() -> String {
    fixtures::queue_blueprints(&[("retention", "number"), ("stuck", "number")])
}

/// Queues with their retention, and `stuck` as the property `stuck`.
fn mapping(stuck: &str) -> String {
    let stuck = format!("'{stuck}'");
    let queues = QueueResource {
        blueprint: "queue",
        select_all: true,
        properties: &[RETENTION, ("stuck", &stuck)],
        relations: &[],
    };
    fixtures::mapping(&[&queues.yaml()])
}

/// The expression that hangs on queue q2 only, so that other items map before it.
fn stuck_expression() -> String {
    format!("if .Properties.QueueName == \"q2\" then {RUNAWAY} else 1 end")
}

fn queue(account: &str, name: &str) -> Json {
    fixtures::retained(fixtures::sqs_queue(account, "us-east-1", name), 345600)
}

/// One account, one region, `count` queues, with the given `stuck` expression.
fn workspace(count: usize, stuck: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "tidemark.yaml",
        &fixtures::snapshot_config("robust", "[mappings/queues.yaml]"),
    );
    ws.write("mappings/queues.yaml", &mapping(stuck));
    ws.write("mappings/blueprints.json", &blueprints());
    fixtures::write_queue_snapshot(
        &|rel, text| ws.write(rel, text),
        &[(PROD, "prod")],
        &|account| {
            (0..count)
                .map(|i| queue(account, &format!("q{i}")))
                .collect()
        },
    );
    ws
}

/// Asserts that the run stopped with exit 1 naming queue q2, and returns what it said.
fn stopped_on_q2(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(code(out), 1, "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("https://sqs.us-east-1.amazonaws.com/{PROD}/q2")),
        "the item is not named: {stderr}"
    );
    stderr
}

fn assert_names_the_runaway(out: &Output) {
    let stderr = stopped_on_q2(out);
    assert!(
        stderr.contains(&stuck_expression()),
        "the expression is not named: {stderr}"
    );
    assert!(stderr.contains(PROD), "the account is not named: {stderr}");
    assert!(
        stderr.contains("AWS::SQS::Queue"),
        "the kind is not named: {stderr}"
    );
}

#[test]
fn a_runaway_expression_ends_plan_with_exit_1_naming_the_item_and_expression() {
    let ws = workspace(5, &stuck_expression());
    let config = ws.config();
    let out = run(&ws, &["plan", "-c", &config]);
    assert_names_the_runaway(&out);
}

#[test]
fn a_runaway_expression_ends_apply_with_nothing_written() {
    let ws = workspace(5, &stuck_expression());
    let config = ws.config();
    let out = run(&ws, &["apply", "-c", &config]);
    assert_names_the_runaway(&out);
    assert_eq!(ws.entities(), Vec::<Json>::new());
}

/// `tidemark map` with the workspace's mapping on its recorded queues.
fn map_the_queues(ws: &Workspace) -> Output {
    let mapping = ws.path("mappings/queues.yaml").display().to_string();
    let input = ws
        .path(&format!("snap/{PROD}/us-east-1/AWS_SQS_Queue.json"))
        .display()
        .to_string();
    let args = ["map", "--mapping", &mapping, "--kind", "AWS::SQS::Queue"];
    run(
        ws,
        &[&args[..], &["--account", PROD, "--input", &input]].concat(),
    )
}

#[test]
fn a_runaway_expression_ends_map_with_exit_1_naming_the_item_and_expression() {
    let ws = workspace(5, &stuck_expression());
    let out = map_the_queues(&ws);
    assert_names_the_runaway(&out);
}

/// Recurses without end, growing the stack until it overflows, on queue q2 only.
fn overflowing_expression() -> String {
    "def deeper: 1 + deeper; if .Properties.QueueName == \"q2\" then deeper else 1 end".into()
}

fn assert_names_the_overflow(out: &Output) {
    let stderr = stopped_on_q2(out);
    assert!(
        stderr.contains("overflowed its stack"),
        "the cause is not said: {stderr}"
    );
    assert!(
        stderr.contains("calls itself"),
        "no hint at the cause: {stderr}"
    );
}

#[test]
fn a_function_that_recurses_without_end_ends_plan_and_apply_with_exit_1_naming_the_item() {
    let ws = workspace(5, &overflowing_expression());
    let config = ws.config();
    assert_names_the_overflow(&run(&ws, &["plan", "-c", &config]));
    assert_names_the_overflow(&run(&ws, &["apply", "-c", &config]));
    assert_eq!(ws.entities(), Vec::<Json>::new());
}

#[test]
fn a_function_that_recurses_without_end_ends_map_with_exit_1_naming_the_item() {
    let ws = workspace(5, &overflowing_expression());
    let out = map_the_queues(&ws);
    assert_names_the_overflow(&out);
}

#[test]
fn a_function_that_ends_maps_like_any_expression() {
    let ws = workspace(
        5,
        "def count: if . > 0 then . - 1 | count else 7 end; 3 | count",
    );
    let config = ws.config();
    let out = run(&ws, &["apply", "-c", &config]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stuck: Vec<Json> = ws
        .entities()
        .iter()
        .map(|e| e["entity"]["properties"]["stuck"].clone())
        .collect();
    assert_eq!(stuck, vec![json!(7); 5]);
}

#[test]
fn the_same_mapping_without_the_runaway_branch_applies_every_queue() {
    // The control for the tests above: the workspace itself is sound.
    let ws = workspace(5, "1");
    let config = ws.config();
    let out = run(&ws, &["apply", "-c", &config]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(ws.entities().len(), 5);
}

// Property tests: the loaders and the diff never panic on arbitrary or mangled input.

mod properties {
    use std::path::Path;

    use proptest::prelude::*;
    use serde_json::Value as Json;
    use tidemark::core::mapping::{LoadOptions, MappingSource, Mappings};

    const VALID_CONFIG: &str = "integration: {identifier: robust}\nsource:\n  type: snapshot\n  path: snap\n  regions: [us-east-1]\ncatalog: {type: local}\nmappings: [m.yaml]\n";

    fn valid_mapping() -> String {
        super::mapping("1")
    }

    /// A valid text with one byte range replaced by arbitrary text.
    fn mutated(valid: String) -> impl Strategy<Value = String> {
        let len = valid.len();
        (0..=len, 0..=len, "[ -~\n\t:{}\\[\\]'\"|&*!-]{0,12}").prop_map(move |(a, b, insert)| {
            let (start, end) = (a.min(b), a.max(b));
            let mut text = valid.clone();
            if text.is_char_boundary(start) && text.is_char_boundary(end) {
                text.replace_range(start..end, &insert);
            }
            text
        })
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_config(text: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tidemark.yaml");
        // A small mapping file: the builtin ones take long to compile for every case.
        std::fs::write(dir.path().join("m.yaml"), valid_mapping()).expect("write");
        std::fs::write(dir.path().join("blueprints.json"), super::blueprints()).expect("write");
        if let Err(diagnostics) = tidemark::config::load_text(&path, text, &no_env) {
            assert!(!diagnostics.is_empty(), "a failed load must say why");
        }
    }

    fn load_mapping(text: String) {
        let sources = [MappingSource {
            name: "m.yaml".into(),
            text,
        }];
        if let Err(diagnostics) = Mappings::load(&sources, &LoadOptions::default()) {
            assert!(!diagnostics.is_empty(), "a failed load must say why");
        }
    }

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i32>().prop_map(Json::from),
            (-1e6f64..1e6).prop_map(Json::from),
            "[a-z]{0,4}".prop_map(Json::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn the_config_loader_never_panics_on_arbitrary_text(text in "[ -~\n]{0,200}") {
            load_config(&text);
        }

        #[test]
        fn the_config_loader_never_panics_on_a_mangled_valid_config(text in mutated(VALID_CONFIG.to_owned())) {
            load_config(&text);
        }

        #[test]
        fn the_mapping_loader_never_panics_on_arbitrary_text(text in "[ -~\n]{0,200}") {
            load_mapping(text);
        }

        #[test]
        fn the_mapping_loader_never_panics_on_a_mangled_valid_mapping(text in mutated(valid_mapping())) {
            load_mapping(text);
        }

        #[test]
        fn canonical_form_is_idempotent(value in json()) {
            let once = tidemark::core::reconcile::compare::canonical(&value);
            prop_assert_eq!(tidemark::core::reconcile::compare::canonical(&once), once);
        }
    }

    #[test]
    fn the_unmangled_texts_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: &Path = &dir.path().join("tidemark.yaml");
        std::fs::write(dir.path().join("m.yaml"), valid_mapping()).expect("write");
        std::fs::write(dir.path().join("blueprints.json"), super::blueprints()).expect("write");
        let loaded = tidemark::config::load_text(path, VALID_CONFIG, &no_env);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
        let sources = [MappingSource {
            name: "m.yaml".into(),
            text: valid_mapping(),
        }];
        assert!(Mappings::load(&sources, &LoadOptions::default()).is_ok());
    }
}

/// Owned entities sorted, for comparing two catalogs.
fn sorted_entities(ws: &Workspace) -> Vec<String> {
    let mut all: Vec<String> = ws.entities().iter().map(Json::to_string).collect();
    all.sort();
    all
}

/// The second state of the crash test's snapshot: every third queue gone, the others with a
/// new retention, and as many new queues, so the apply creates, updates and deletes.
fn write_changed_queues(ws: &Workspace, count: usize) {
    let queues: Vec<Json> = (0..count)
        .filter(|i| i % 3 != 0)
        .map(|i| {
            let mut q = queue(PROD, &format!("q{i}"));
            q["Properties"]["MessageRetentionPeriod"] = json!(60);
            q
        })
        .chain((0..count).map(|i| queue(PROD, &format!("new{i}"))))
        .collect();
    ws.write_json(
        &format!("snap/{PROD}/us-east-1/AWS_SQS_Queue.json"),
        &Json::Array(queues),
    );
}

/// A workspace whose catalog holds the first state, with the snapshot at the second.
fn workspace_mid_change(count: usize) -> Workspace {
    let ws = workspace(count, "1");
    let config = ws.config();
    let out = run(&ws, &["apply", "-c", &config]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    write_changed_queues(&ws, count);
    ws
}

#[test]
fn an_apply_killed_at_any_point_then_rerun_ends_like_a_clean_run() {
    const QUEUES: usize = 3000;
    let clean = workspace_mid_change(QUEUES);
    let before = sorted_entities(&clean);
    let config = clean.config();
    let started = std::time::Instant::now();
    let out = run(&clean, &["apply", "-c", &config]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let expected = sorted_entities(&clean);
    assert_eq!(expected.len(), QUEUES * 2 / 3 + QUEUES);

    // Kill points spread over the clean run's duration, so most land inside the apply.
    let mut interrupted = 0;
    for tenths in [1, 2, 4, 5, 6, 7, 8, 9] {
        let at = took * tenths / 10;
        let ws = workspace_mid_change(QUEUES);
        let config = ws.config();
        let mut child = command(&ws, &["apply", "-c", &config])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn apply");
        std::thread::sleep(at);
        // SIGKILL: no destructor, no rollback handler runs.
        child.kill().expect("kill the apply");
        child.wait().expect("wait for the killed apply");
        let after_kill = sorted_entities(&ws);
        if after_kill != before && after_kill != expected {
            interrupted += 1;
        }
        let out = run(&ws, &["apply", "-c", &config]);
        assert_eq!(
            code(&out),
            0,
            "rerun after a kill at {at:?}: {}",
            text(&out.stderr)
        );
        let got = sorted_entities(&ws);
        assert_eq!(got.len(), expected.len(), "killed at {at:?}");
        assert_eq!(got, expected, "killed at {at:?}");
    }
    assert!(
        interrupted > 0,
        "no kill landed inside an apply (clean run took {took:?}), so the test showed nothing"
    );
}

#[test]
fn a_variable_that_is_not_utf8_is_left_out_of_env_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let ws = workspace(2, "env.TIDEMARK_TEST_VAR | tonumber");
    let config = ws.config();
    let out = command(&ws, &["apply", "-c", &config])
        .env(
            std::ffi::OsStr::from_bytes(b"NOT_UTF8"),
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
        )
        .env("TIDEMARK_TEST_VAR", "7")
        .output()
        .expect("run tidemark");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stuck: Vec<Json> = ws
        .entities()
        .iter()
        .map(|e| e["entity"]["properties"]["stuck"].clone())
        .collect();
    assert_eq!(stuck, vec![json!(7), json!(7)]);
}
