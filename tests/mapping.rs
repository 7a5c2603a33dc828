//! End-to-end tests of `tidemark map`: the real binary, a mapping file on disk, items on stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value as Json, json};

const MAPPING: &str = r#"
resources:
  - kind: AWS::S3::Bucket
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: '"arn:aws:s3:::" + .Identifier'
          title: .Identifier
          blueprint: '"awsS3Bucket"'
          properties:
            region: .__Region
            tags: '.Properties.Tags // [] | map({(.Key): .Value}) | add'
          relations:
            account: .__AccountId
  - kind: AWS::Lambda::Function
    port:
      entity:
        mappings:
          identifier: .Properties.Arn
          blueprint: '"awsLambdaFunction"'
          properties:
            env: .Properties.Environment.Variables
            missing: .Properties.Nope.Deeper | ascii_downcase
"#;

struct Run {
    status: i32,
    stdout: Vec<Json>,
    stderr: String,
}

fn run_map(mapping: &str, args: &[&str], stdin: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mapping.yaml");
    std::fs::write(&path, mapping).expect("write mapping");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("map")
        .arg("--mapping")
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidemark");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8(stdout).expect("utf-8 stdout");
    Run {
        status: status.code().unwrap_or(-1),
        stdout: stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[test]
fn raw_cloud_control_descriptions_map_to_entity_lines() {
    let item = json!({"TypeName": "AWS::S3::Bucket", "Identifier": "b1",
        "Properties": json!({"Tags": [{"Key": "env", "Value": "prod"}]}).to_string()});
    let run = run_map(
        MAPPING,
        &["--account", "111111111111", "--region", "us-east-1"],
        &item.to_string(),
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        vec![
            json!({"identifier": "arn:aws:s3:::b1", "blueprint": "awsS3Bucket", "title": "b1",
                    "properties": {"region": "us-east-1", "tags": {"env": "prod"}},
                    "relations": {"account": "111111111111"}})
        ]
    );
}

/// Expressions whose results depend on key order. The expected values are what jq 1.7.1 gives
/// on the same item (Ocean's jq): objects keep the order of the document Cloud Control sent.
const ORDER_MAPPING: &str = r#"
resources:
  - kind: AWS::S3::Bucket
    port:
      entity:
        mappings:
          identifier: .Identifier
          blueprint: '"awsS3Bucket"'
          properties:
            keys: .Properties | keys_unsorted
            entries: .Properties.Config | to_entries | map(.key)
            values: '[.Properties.Config[]]'
            json: .Properties.Config | tojson
            pairs: '.Properties.Config | to_entries | map("\(.key)=\(.value)") | join(",")'
            strings: .Properties.Config | with_entries(.value |= tostring) | tojson
            tagKeys: '.Properties.Tags | map({(.Key): .Value}) | add | keys_unsorted'
            tags: '.Properties.Tags | map({(.Key): .Value}) | add'
            tagJson: .Properties.Tags | from_entries | tojson
            top: keys_unsorted
"#;

#[test]
fn mappings_see_object_keys_in_the_order_of_the_document_as_jq_does() {
    let properties = r#"{"Zeta": "z", "Alpha": "a", "Config": {"timeout": 30, "batch": 10, "memory": 128},
        "Tags": [{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "prod"}]}"#;
    let item = json!({"TypeName": "AWS::S3::Bucket", "Identifier": "b1", "Properties": properties});
    let run = run_map(
        ORDER_MAPPING,
        &["--account", "111111111111", "--region", "us-east-1"],
        &item.to_string(),
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout.len(), 1, "{}", run.stderr);
    let props = &run.stdout[0]["properties"];
    let expected = json!({
        "keys": ["Zeta", "Alpha", "Config", "Tags"],
        "entries": ["timeout", "batch", "memory"],
        "values": [30, 10, 128],
        "json": "{\"timeout\":30,\"batch\":10,\"memory\":128}",
        "pairs": "timeout=30,batch=10,memory=128",
        "strings": "{\"timeout\":\"30\",\"batch\":\"10\",\"memory\":\"128\"}",
        "tagKeys": ["team", "env"],
        "tags": {"team": "core", "env": "prod"},
        "tagJson": "{\"team\":\"core\",\"env\":\"prod\"}",
        "top": ["Identifier", "Type", "Properties", "__ExtraContext", "__AccountId", "__Region", "__Kind"]
    });
    for (name, want) in expected.as_object().expect("object") {
        // Compared as text: `==` on JSON objects ignores key order.
        assert_eq!(props[name].to_string(), want.to_string(), "property {name}");
    }
}

#[test]
fn items_as_mappings_see_them_keep_their_own_account_and_region() {
    let item = json!({"Identifier": "b2", "Type": "AWS::S3::Bucket", "Properties": {},
        "__ExtraContext": {"AccountId": "222222222222", "AccountName": "prod", "Region": "eu-west-1"},
        "__AccountId": "222222222222", "__Region": "eu-west-1", "__Kind": "AWS::S3::Bucket"});
    let run = run_map(
        MAPPING,
        &["--account", "999999999999", "--region", "us-east-1"],
        &item.to_string(),
    );
    assert_eq!(run.stdout.len(), 1, "{}", run.stderr);
    assert_eq!(run.stdout[0]["properties"]["region"], "eu-west-1");
    assert_eq!(run.stdout[0]["relations"]["account"], "222222222222");
}

#[test]
fn arrays_and_json_lines_are_both_read_and_kind_can_be_forced() {
    let a = json!({"Identifier": "x1", "Properties": "{}"});
    let b = json!({"Identifier": "x2", "Properties": "{}"});
    let lines = format!("{a}\n{b}\n");
    let array = json!([a, b]).to_string();
    for input in [lines, array] {
        let run = run_map(MAPPING, &["--kind", "AWS::S3::Bucket"], &input);
        let ids: Vec<&str> = run
            .stdout
            .iter()
            .filter_map(|e| e["title"].as_str())
            .collect();
        assert_eq!(ids, vec!["x1", "x2"], "{}", run.stderr);
    }
}

#[test]
fn lambda_environment_values_are_redacted_before_mapping() {
    let item = json!({"TypeName": "AWS::Lambda::Function", "Identifier": "f",
        "Properties": json!({"Arn": "arn:aws:lambda:us-east-1:1:function:f",
            "Environment": {"Variables": {"DB_PASSWORD": "hunter2"}}}).to_string()});
    let run = run_map(MAPPING, &[], &item.to_string());
    assert_eq!(run.stdout.len(), 1, "{}", run.stderr);
    assert_eq!(
        run.stdout[0]["properties"]["env"],
        json!({"DB_PASSWORD": "***"})
    );
    assert!(!run.stderr.contains("hunter2"));
    // The failing optional property is null with a warning naming it.
    assert_eq!(run.stdout[0]["properties"]["missing"], Json::Null);
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("properties.missing"),
        "{}",
        run.stderr
    );
    // Fields the mapping does not define are left out.
    assert!(run.stdout[0].get("title").is_none());
}

#[test]
fn mapping_errors_skip_the_item_and_are_reported_with_its_identity() {
    let mapping = "resources:\n  - kind: AWS::S3::Bucket\n    port:\n      entity:\n        mappings:\n          identifier: .Properties.Arn\n          blueprint: '\"b\"'\n";
    let good = json!({"TypeName": "AWS::S3::Bucket", "Identifier": "ok", "Properties": "{\"Arn\": \"a1\"}"});
    let bad = json!({"TypeName": "AWS::S3::Bucket", "Identifier": "broken", "Properties": "{}"});
    let run = run_map(
        mapping,
        &["--account", "1", "--region", "r"],
        &format!("{good}\n{bad}\n"),
    );
    // A mapping error is exit 3 in `map` as in every other command: partial.
    assert_eq!(run.status, 3);
    assert_eq!(
        run.stdout,
        vec![json!({"identifier": "a1", "blueprint": "b"})]
    );
    assert!(
        run.stderr.contains("AWS::S3::Bucket broken") && run.stderr.contains("identifier is null"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_mapping_that_does_not_compile_fails_with_every_error_and_its_position() {
    let mapping = "resources:\n  - kind: K\n    port:\n      entity:\n        mappings:\n          identifier: .a |\n          blueprint: nope(1)\n";
    let run = run_map(mapping, &[], "");
    assert_eq!(run.status, 1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(errors[0].contains("mapping.yaml:6:"), "{}", errors[0]);
    assert!(errors[1].contains("mapping.yaml:7:22"), "{}", errors[1]);
    assert!(errors[1].contains("nope/1"), "{}", errors[1]);
}

#[test]
fn input_that_is_not_json_is_an_error() {
    let run = run_map(MAPPING, &[], "{\"Identifier\": ");
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("not JSON"), "{}", run.stderr);
}

/// The mappings [`MAPPING`] compiles to, for the `watch` mapping worker.
fn compiled() -> tidemark::core::mapping::Mappings {
    let source = tidemark::core::mapping::MappingSource {
        name: "mapping.yaml".into(),
        text: MAPPING.into(),
    };
    let (mappings, _) = tidemark::core::mapping::Mappings::load(
        &[source],
        &tidemark::core::mapping::LoadOptions::default(),
    )
    .expect("the mapping compiles");
    mappings
}

fn bucket(name: &str) -> tidemark::core::model::RawItem {
    tidemark::core::model::RawItem {
        account: "222222222222".into(),
        account_name: Some("prod".into()),
        region: "eu-west-1".into(),
        kind: "AWS::S3::Bucket".into(),
        identifier: name.into(),
        model: None,
        properties: json!({"BucketName": name, "Tags": [{"Key": "team", "Value": "web"}]}),
    }
}

#[test]
fn the_watch_mapping_worker_gives_what_mapping_in_process_gives() {
    let mappings = compiled();
    let mut worker =
        tidemark::sandbox::worker::Worker::new(env!("CARGO_BIN_EXE_tidemark").into(), &mappings);
    let items: Vec<_> = (0..50).map(|i| bucket(&format!("b{i}"))).collect();
    // Twice through the same child: answers never leak from one batch into the next.
    for _ in 0..2 {
        let outcomes = worker.map_items(&items).expect("the worker answers");
        let expected: Vec<_> = items.iter().map(|i| mappings.map_item(i)).collect();
        assert_eq!(outcomes, expected);
    }
}

#[test]
fn a_batch_given_up_unread_does_not_leak_answers_into_the_next() {
    let mappings = compiled();
    let mut worker =
        tidemark::sandbox::worker::Worker::new(env!("CARGO_BIN_EXE_tidemark").into(), &mappings);
    {
        let mut abandoned = worker.batch();
        abandoned.send(&bucket("stale"));
    }
    let outcomes = worker
        .map_items(&[bucket("fresh")])
        .expect("the worker answers");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        outcomes[0].entities[0].entity.identifier,
        "arn:aws:s3:::fresh"
    );
}

#[test]
fn items_nothing_maps_are_reported_by_kind_and_items_without_a_type_by_position() {
    let mapping = "resources:\n  - kind: AWS::S3::Bucket\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"b\"'\n";
    let items = [
        json!({"Type": "AWS::S3::Bucket", "Identifier": "b1", "Properties": {}}),
        json!({"Type": "AWS::EC2::Instance", "Identifier": "i-1", "Properties": {}}),
        json!({"Type": "AWS::EC2::Instance", "Identifier": "i-2", "Properties": {}}),
        json!({"Identifier": "typeless", "Properties": {}}),
    ];
    let input: String = items.iter().map(|i| format!("{i}\n")).collect();
    let run = run_map(mapping, &[], &input);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout.len(), 1);
    assert!(
        run.stderr.contains(
            "2 items of kind AWS::EC2::Instance skipped: no entry of the mapping maps this kind"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("item 4 skipped") && run.stderr.contains("no Type"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_account_and_region_flags_mappings_see_null_not_empty_strings() {
    let mapping = "resources:\n  - kind: K\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"b\"'\n          properties:\n            region: .__Region\n            account: .__ExtraContext.AccountId\n            whole: '[.__Region, .__AccountId]'\n";
    let run = run_map(
        mapping,
        &[],
        r#"{"Type": "K", "Identifier": "x", "Properties": {}}"#,
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout[0]["properties"],
        json!({"region": null, "account": null, "whole": [null, null]})
    );
}
