//! Workspaces shared by the end-to-end tests of both catalogs, written through a `write(path,
//! text)` function so that each test binary can include this file whatever its harness.
#![allow(dead_code)]

use serde_json::{Value as Json, json};

pub const SEARCH_ACCOUNT: &str = "222222222222";

/// Teams another tool owns, that queues find by their lead: q0's lead leads `t-alpha`, q1's
/// `t-beta`, two teams share q2's lead, and nobody leads for q3.
pub fn search_teams() -> Vec<Json> {
    [
        ("t-alpha", "q0@example.com"),
        ("t-beta", "q1@example.com"),
        ("t-dup1", "q2@example.com"),
        ("t-dup2", "q2@example.com"),
    ]
    .iter()
    .map(|(id, lead)| json!({"identifier": id, "title": id, "properties": {"lead": lead}}))
    .collect()
}

/// Queues whose `ownerTeam` relation is an Ocean search relation: the team whose lead is the
/// queue's name at example.com.
const SEARCH_MAPPING: &str = r#"
resources:
  - kind: AWS::SQS::Queue
    port:
      entity:
        mappings:
          identifier: .Properties.Arn
          title: .Properties.QueueName
          blueprint: '"queue"'
          relations:
            ownerTeam:
              combinator: '"and"'
              rules:
                - property: '"lead"'
                  operator: '"="'
                  value: '.Properties.QueueName + "@example.com"'
"#;

const SEARCH_BLUEPRINTS: &str = r#"[
  {"identifier": "team", "title": "Team", "schema": {"properties": {"lead": {"type": "string"}}}, "relations": {}},
  {"identifier": "queue", "title": "Queue", "schema": {"properties": {}},
   "relations": {"ownerTeam": {"target": "team", "many": false, "required": false}}}
]"#;

/// A snapshot of four queues in one account and the search-relation mapping; `catalog` is the
/// config's `catalog:` section.
pub fn write_search_workspace(write: &dyn Fn(&str, &str), catalog: &str) {
    write(
        "tidemark.yaml",
        &format!(
            "integration: {{identifier: searches}}\nsource: {{type: snapshot, path: snap}}\nmappings: [mappings/queues.yaml]\ncatalog:\n{catalog}"
        ),
    );
    write("mappings/queues.yaml", SEARCH_MAPPING);
    write("mappings/blueprints.json", SEARCH_BLUEPRINTS);
    let manifest = json!({"format_version": "1", "recorded_at": "2026-11-01T00:00:00Z",
        "discovery": {"status": "ok", "error": null},
        "accounts": [{"Id": SEARCH_ACCOUNT, "Name": "prod", "assumed": true, "error": null}],
        "scopes": [{"account": SEARCH_ACCOUNT, "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null}]});
    write("snap/manifest.json", &manifest.to_string());
    let queues: Vec<Json> = (0..4)
        .map(|i| {
            json!({"Identifier": format!("https://sqs.us-east-1.amazonaws.com/{SEARCH_ACCOUNT}/q{i}"),
                   "Properties": {"QueueName": format!("q{i}"),
                                  "Arn": format!("arn:aws:sqs:us-east-1:{SEARCH_ACCOUNT}:q{i}")}})
        })
        .collect();
    write(
        &format!("snap/{SEARCH_ACCOUNT}/us-east-1/AWS_SQS_Queue.json"),
        &Json::Array(queues).to_string(),
    );
}

/// The queue's ARN.
pub fn search_queue(i: usize) -> String {
    format!("arn:aws:sqs:us-east-1:{SEARCH_ACCOUNT}:q{i}")
}

/// Checks the plan of the search workspace's first sync: q0 and q1 point at their team, q3's
/// search found nothing (null, a warning), q2's found two teams (a mapping error, exit 3).
pub fn assert_first_search_plan(status: i32, plan: &Json) {
    assert_eq!(status, 3, "{plan}");
    let relation_of = |i: usize| {
        plan["changes"]
            .as_array()
            .and_then(|changes| {
                changes
                    .iter()
                    .find(|c| c["identifier"] == search_queue(i).as_str())
            })
            .map(|c| c["after"]["relations"]["ownerTeam"].clone())
    };
    assert_eq!(relation_of(0), Some(json!("t-alpha")), "{plan}");
    assert_eq!(relation_of(1), Some(json!("t-beta")));
    assert_eq!(relation_of(3), Some(Json::Null));
    assert_eq!(relation_of(2), None, "q2 is a mapping error, not a change");
    let errors = plan["mapping_errors"].to_string();
    assert!(errors.contains("found 2: t-dup1, t-dup2"), "{errors}");
    assert!(
        plan["warnings"]
            .to_string()
            .contains("found no team entity"),
        "{}",
        plan["warnings"]
    );
}
