//! Workspaces shared by the end-to-end tests of both catalogs, written through a `write(path,
//! text)` function so that each test binary can include this file whatever its harness: configs,
//! mappings, blueprints and snapshots of SQS queues.
#![allow(dead_code)]

use serde_json::{Value as Json, json};

/// A config that syncs the snapshot in `snap` into the local catalog as `owner`; `mappings` is the
/// config's `mappings:` value.
pub fn snapshot_config(owner: &str, mappings: &str) -> String {
    format!(
        "integration: {{identifier: {owner}}}\nsource: {{type: snapshot, path: snap}}\ncatalog: {{type: local}}\nmappings: {mappings}\n"
    )
}

/// A mapping file of `resources` (each from [`ACCOUNT_RESOURCE`] or [`QueueResource::yaml`]).
pub fn mapping(resources: &[&str]) -> String {
    format!("\nresources:\n{}", resources.concat())
}

/// Every account as an `account` entity, identified by its id.
pub const ACCOUNT_RESOURCE: &str = r#"  - kind: AWS::Account::Info
    port:
      entity:
        mappings:
          identifier: .Properties.Id
          title: .Properties.Name
          blueprint: '"account"'
"#;

/// A queue's region, as a mapped property.
pub const REGION: (&str, &str) = ("region", ".__Region");
/// A queue's retention period, as a mapped property.
pub const RETENTION: (&str, &str) = ("retention", ".Properties.MessageRetentionPeriod");
/// A queue's relation to its account's entity.
pub const ACCOUNT_RELATION: (&str, &str) = ("account", ".__AccountId");

/// Every SQS queue as an entity of `blueprint`, identified by its ARN and titled by its name.
pub struct QueueResource<'a> {
    pub blueprint: &'a str,
    /// With `selector: {query: 'true'}`.
    pub select_all: bool,
    /// (property, jq expression).
    pub properties: &'a [(&'a str, &'a str)],
    /// (relation, jq expression).
    pub relations: &'a [(&'a str, &'a str)],
}

impl QueueResource<'_> {
    /// The resource as an item of a mapping file's `resources:`.
    pub fn yaml(&self) -> String {
        let mut yaml = String::from("  - kind: AWS::SQS::Queue\n");
        if self.select_all {
            yaml.push_str("    selector:\n      query: 'true'\n");
        }
        yaml.push_str(&format!(
            "    port:\n      entity:\n        mappings:\n          identifier: .Properties.Arn\n          title: .Properties.QueueName\n          blueprint: '\"{}\"'\n",
            self.blueprint
        ));
        for (section, fields) in [
            ("properties", self.properties),
            ("relations", self.relations),
        ] {
            if !fields.is_empty() {
                yaml.push_str(&format!("          {section}:\n"));
                for (name, expression) in fields {
                    yaml.push_str(&format!("            {name}: {expression}\n"));
                }
            }
        }
        yaml
    }
}

/// A mapping of accounts and of queues (into `queue`, with `properties` and a relation to their
/// account), and the blueprints it maps into: (mapping file, `blueprints.json`). Each property
/// is its (name, jq expression) and its JSON type.
pub fn accounts_and_queues(
    select_all: bool,
    properties: &[((&str, &str), &str)],
) -> (String, String) {
    let mapped: Vec<(&str, &str)> = properties.iter().map(|(mapped, _)| *mapped).collect();
    let typed: Vec<(&str, &str)> = properties
        .iter()
        .map(|((name, _), kind)| (*name, *kind))
        .collect();
    let queues = QueueResource {
        blueprint: "queue",
        select_all,
        properties: &mapped,
        relations: &[ACCOUNT_RELATION],
    };
    (
        mapping(&[ACCOUNT_RESOURCE, &queues.yaml()]),
        account_and_queue_blueprints(&typed),
    )
}

/// `blueprints.json` for an `account` blueprint and a `queue` blueprint with `properties` (name,
/// JSON type) and a relation `account` to it.
pub fn account_and_queue_blueprints(properties: &[(&str, &str)]) -> String {
    let account = json!({"identifier": "account", "title": "Account", "schema": {"properties": {}}, "relations": {}});
    Json::Array(vec![account, queue_blueprint(properties, true)]).to_string()
}

/// `blueprints.json` for a `queue` blueprint alone, with `properties` (name, JSON type).
pub fn queue_blueprints(properties: &[(&str, &str)]) -> String {
    Json::Array(vec![queue_blueprint(properties, false)]).to_string()
}

fn queue_blueprint(properties: &[(&str, &str)], related_to_account: bool) -> Json {
    let properties: serde_json::Map<String, Json> = properties
        .iter()
        .map(|(name, kind)| (name.to_string(), json!({"type": kind})))
        .collect();
    let relations = if related_to_account {
        json!({"account": {"target": "account", "many": false, "required": false}})
    } else {
        json!({})
    };
    json!({"identifier": "queue", "title": "Queue", "schema": {"properties": properties}, "relations": relations})
}

/// A mapping of `AWS::EKS::Nodegroup`, listed once per cluster the `AWS::EKS::Cluster` listing
/// found, with `port` as the resource's `port:` section.
pub fn nodegroups_from_clusters(port: &str) -> String {
    format!(
        "\nresources:\n  - kind: AWS::EKS::Nodegroup\n    selector:\n      resourceModelsFrom:\n        kind: AWS::EKS::Cluster\n        model: '{{\"ClusterName\": .Identifier}}'\n{port}"
    )
}

/// An SQS queue as a snapshot records it.
pub fn sqs_queue(account: &str, region: &str, name: &str) -> Json {
    json!({"Identifier": format!("https://sqs.{region}.amazonaws.com/{account}/{name}"),
           "Properties": {"QueueName": name, "Arn": format!("arn:aws:sqs:{region}:{account}:{name}")}})
}

/// `queue` with a `MessageRetentionPeriod` of `seconds`.
pub fn retained(mut queue: Json, seconds: u64) -> Json {
    queue["Properties"]["MessageRetentionPeriod"] = json!(seconds);
    queue
}

/// A snapshot's manifest: `accounts` (id, name), each with its SQS queues listed in us-east-1.
pub fn queue_manifest(accounts: &[(&str, &str)]) -> Json {
    let scopes: Vec<Json> = accounts
        .iter()
        .map(|(id, _)| json!({"account": id, "region": "us-east-1", "kind": "AWS::SQS::Queue", "status": "ok", "error": null}))
        .collect();
    let accounts: Vec<Json> = accounts
        .iter()
        .map(|(id, name)| json!({"Id": id, "Name": name, "assumed": true, "error": null}))
        .collect();
    json!({"format_version": "1", "recorded_at": "2026-11-01T00:00:00Z",
           "discovery": {"status": "ok", "error": null},
           "accounts": accounts, "scopes": scopes})
}

/// A snapshot in `snap` of `accounts` (id, name) and the queues `queues(account)` gives each in
/// us-east-1; the manifest last, as `tidemark snapshot` writes it.
pub fn write_queue_snapshot(
    write: &dyn Fn(&str, &str),
    accounts: &[(&str, &str)],
    queues: &dyn Fn(&str) -> Vec<Json>,
) {
    for (account, _) in accounts {
        write(
            &format!("snap/{account}/us-east-1/AWS_SQS_Queue.json"),
            &Json::Array(queues(account)).to_string(),
        );
    }
    write("snap/manifest.json", &queue_manifest(accounts).to_string());
}

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

/// The `relations:` of queues whose `ownerTeam` is an Ocean search relation: the team whose lead
/// is the queue's name at example.com.
const SEARCH_RELATIONS: &str = r#"          relations:
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
    let queues = QueueResource {
        blueprint: "queue",
        select_all: false,
        properties: &[],
        relations: &[],
    };
    write(
        "mappings/queues.yaml",
        &(mapping(&[&queues.yaml()]) + SEARCH_RELATIONS),
    );
    write("mappings/blueprints.json", SEARCH_BLUEPRINTS);
    write_queue_snapshot(write, &[(SEARCH_ACCOUNT, "prod")], &|account| {
        (0..4)
            .map(|i| sqs_queue(account, "us-east-1", &format!("q{i}")))
            .collect()
    });
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
