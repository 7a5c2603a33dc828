//! The default mappings (`mappings/aws.yaml`) and blueprints (`mappings/blueprints.json`):
//! golden tests that run every fixture under `tests/fixtures/aws/<Kind>/` through the real
//! `tidemark map` binary, and checks that the mappings, the blueprints and the expected entities
//! agree with each other and never touch secret values. Each kind's `input.json` is the full
//! model (what GetResource returns) and `list.json` what ListResources returns of it
//! (`tests/fixtures/aws/list_models.json`); a kind is mapped from what it will really receive.

#[path = "support/list_models.rs"]
mod list_models;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value as Json, json};

use tidemark::core::model::{Blueprint, Entity};
use tidemark::core::validate::{is_valid_blueprint_identifier, validate_entity};
use tidemark::core::yaml::{self, Node};

/// The account and region `tidemark map` fills in for fixture items that do not carry their own.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";

/// The kinds issue 5 requires the defaults to cover.
const REQUIRED_KINDS: [&str; 25] = [
    "AWS::Account::Info",
    "AWS::S3::Bucket",
    "AWS::EC2::Instance",
    "AWS::EC2::Volume",
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::Lambda::Function",
    "AWS::ECS::Cluster",
    "AWS::ECS::Service",
    "AWS::EKS::Cluster",
    "AWS::ECR::Repository",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::IAM::Role",
    "AWS::KMS::Key",
    "AWS::CloudFront::Distribution",
    "AWS::Route53::HostedZone",
    "AWS::ApiGateway::RestApi",
    "AWS::StepFunctions::StateMachine",
    "AWS::SecretsManager::Secret",
];

/// Values planted in fixtures where a careless mapping would pick them up (Lambda environment,
/// a secret's SecretString, a CloudFront origin header). None may reach an entity.
const SECRET_CANARIES: [&str; 2] = ["hunter2-not-for-the-catalog", "s3cr3t-shared-with-the-alb"];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn mapping_path() -> PathBuf {
    repo_root().join("mappings/aws.yaml")
}

fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures/aws")
}

fn fixture_dir(kind: &str) -> PathBuf {
    fixtures_dir().join(kind.replace("::", "_"))
}

fn read_json(path: &Path) -> Json {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn mapping_tree() -> Node {
    let text = fs::read_to_string(mapping_path()).expect("mappings/aws.yaml is readable");
    yaml::parse(&text).unwrap_or_else(|e| panic!("mappings/aws.yaml: {e}"))
}

fn blueprints() -> BTreeMap<String, Blueprint> {
    let all = read_json(&repo_root().join("mappings/blueprints.json"));
    let list = all.as_array().expect("blueprints.json is an array");
    let mut by_id = BTreeMap::new();
    for bp in list {
        let bp = Blueprint(bp.clone());
        let id = bp.identifier().to_string();
        assert!(
            by_id.insert(id.clone(), bp).is_none(),
            "blueprint {id} is defined twice"
        );
    }
    by_id
}

/// One `resources` entry of the mapping file, with the parts the checks need.
struct Entry {
    kind: String,
    line: usize,
    blueprint: String,
    /// Every jq expression under `port.entity.mappings`, with a path for messages.
    expressions: Vec<(String, String)>,
    properties: BTreeMap<String, String>,
    relations: BTreeMap<String, String>,
    /// `selector.useGetResourceAPI: true`: mapped from the full model, else from the list model.
    uses_get: bool,
}

fn entries() -> Vec<Entry> {
    let tree = mapping_tree();
    let resources = tree
        .get("resources")
        .and_then(Node::as_seq)
        .expect("aws.yaml has a resources list");
    resources
        .iter()
        .map(|res| {
            let kind = res
                .get("kind")
                .and_then(Node::as_str)
                .expect("every entry has a kind")
                .to_string();
            let mappings = res
                .at_pointer("/port/entity/mappings")
                .unwrap_or_else(|| panic!("{kind}: no port.entity.mappings"));
            let expr = |key: &str| mappings.get(key).and_then(Node::scalar_text);
            let blueprint_expr =
                expr("blueprint").unwrap_or_else(|| panic!("{kind}: no blueprint"));
            // The defaults name each blueprint with a constant, so that the planner knows which
            // blueprints a kind can produce and this test can find its schema.
            let blueprint = match serde_json::from_str::<Json>(&blueprint_expr) {
                Ok(Json::String(s)) => s,
                _ => panic!("{kind}: blueprint {blueprint_expr:?} is not a constant string"),
            };
            let section = |name: &str| -> BTreeMap<String, String> {
                mappings
                    .get(name)
                    .and_then(Node::as_map)
                    .map(|pairs| {
                        pairs
                            .iter()
                            .map(|(k, v)| {
                                let key = k.scalar_text().unwrap_or_default();
                                let text = v.scalar_text().unwrap_or_else(|| {
                                    panic!("{kind}: {name}.{key} is not a jq expression")
                                });
                                (key, text)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let properties = section("properties");
            let relations = section("relations");
            let mut expressions = Vec::new();
            for key in ["identifier", "title", "blueprint", "icon", "team"] {
                if let Some(text) = expr(key) {
                    expressions.push((key.to_string(), text));
                }
            }
            for (key, text) in &properties {
                expressions.push((format!("properties.{key}"), text.clone()));
            }
            for (key, text) in &relations {
                expressions.push((format!("relations.{key}"), text.clone()));
            }
            let uses_get = res
                .at_pointer("/selector/useGetResourceAPI")
                .is_some_and(|n| n.scalar_text().as_deref() == Some("true"));
            Entry {
                kind,
                line: res.pos.line,
                blueprint,
                expressions,
                properties,
                relations,
                uses_get,
            }
        })
        .collect()
}

/// Runs `tidemark map` on a file of items; each item's `Type` selects its mapping entries.
/// One run covers every kind: loading the defaults compiles all their jq expressions, which
/// is the slow part of a run.
fn run_map(input: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("map")
        .arg("--mapping")
        .arg(mapping_path())
        .args(["--account", ACCOUNT, "--region", REGION])
        .arg("--input")
        .arg(input)
        .output()
        .expect("the tidemark binary runs")
}

/// The entities `tidemark map` printed, one JSON value per line.
fn mapped_entities(input: &Path) -> Vec<Json> {
    let out = run_map(input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tidemark map exited with {:?}\nstderr:\n{stderr}",
        out.status.code()
    );
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// Every kind's fixture items (with `Type` set to the kind, after `shape` has had its say) and
/// its expected entities. `shape` returns `None` to leave an item out.
fn fixtures(shape: impl Fn(&Json) -> Option<Json>) -> Vec<(&'static str, Vec<Json>, Vec<Json>)> {
    fixtures_from(|_| "input.json", shape)
}

/// [`fixtures`] with the items of each kind read from the file `file(kind)` names.
fn fixtures_from(
    file: impl Fn(&str) -> &'static str,
    shape: impl Fn(&Json) -> Option<Json>,
) -> Vec<(&'static str, Vec<Json>, Vec<Json>)> {
    REQUIRED_KINDS
        .iter()
        .map(|&kind| {
            let dir = fixture_dir(kind);
            let items = read_json(&dir.join(file(kind)));
            let expected = read_json(&dir.join("expected.json"));
            let (Some(items), Some(expected)) = (items.as_array(), expected.as_array()) else {
                panic!("{kind}: fixtures must be arrays");
            };
            assert_eq!(items.len(), expected.len(), "{kind}: one entity per item");
            let mut kept_items = Vec::new();
            let mut kept_expected = Vec::new();
            for (item, entity) in items.iter().zip(expected) {
                if let Some(mut item) = shape(item) {
                    item["Type"] = json!(kind);
                    kept_items.push(item);
                    kept_expected.push(entity.clone());
                }
            }
            (kind, kept_items, kept_expected)
        })
        .collect()
}

/// Maps all fixtures in one `tidemark map` run and compares each kind's entities with its
/// expected ones (the engine keeps input order; each fixture item gives one entity).
fn assert_fixtures_map_to_expected(fixtures: &[(&str, Vec<Json>, Vec<Json>)]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("items.json");
    let all: Vec<Json> = fixtures
        .iter()
        .flat_map(|(_, items, _)| items.clone())
        .collect();
    fs::write(&input, Json::Array(all).to_string()).expect("write the combined fixture");
    let mut actual = mapped_entities(&input).into_iter();
    let mut failures = Vec::new();
    for (kind, items, expected) in fixtures {
        let got: Vec<Json> = actual.by_ref().take(items.len()).collect();
        if &got != expected {
            failures.push(format!(
                "{kind}:\nexpected {}\n  actual {}",
                pretty(&Json::Array(expected.clone())),
                pretty(&Json::Array(got))
            ));
        }
    }
    let extra: Vec<Json> = actual.collect();
    if !extra.is_empty() {
        failures.push(format!(
            "unexpected extra entities: {}",
            pretty(&Json::Array(extra))
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[test]
fn the_defaults_cover_every_kind_the_issue_lists_with_a_fixture() {
    let mapped: BTreeSet<String> = entries().into_iter().map(|e| e.kind).collect();
    for kind in REQUIRED_KINDS {
        assert!(mapped.contains(kind), "aws.yaml has no entry for {kind}");
        let dir = fixture_dir(kind);
        for file in ["input.json", "expected.json"] {
            assert!(
                dir.join(file).is_file(),
                "{kind}: {} is missing",
                dir.join(file).display()
            );
        }
    }
    for kind in &mapped {
        assert!(
            fixture_dir(kind).join("input.json").is_file(),
            "{kind} is mapped but has no fixture"
        );
    }
}

#[test]
fn every_kind_maps_to_its_golden_entities_through_tidemark_map() {
    assert_fixtures_map_to_expected(&fixtures(|item| Some(item.clone())));
}

/// Cloud Control returns `Properties` as a JSON string; `map` must parse it and give the same
/// entities as for the parsed fixture items.
#[test]
fn raw_cloud_control_descriptions_map_to_the_same_entities() {
    assert_fixtures_map_to_expected(&fixtures(|item| {
        let obj = item.as_object().expect("fixture items are objects");
        // Items that carry their own account or region are not raw descriptions; leave them out.
        if obj.keys().any(|k| k.starts_with("__")) {
            return None;
        }
        let properties = serde_json::to_string(&obj["Properties"]).expect("serialises");
        Some(json!({"Identifier": obj["Identifier"], "Properties": properties}))
    }));
}

/// The kinds the defaults read from GetResource's full model.
fn kinds_using_get_resource() -> BTreeSet<String> {
    entries()
        .into_iter()
        .filter(|e| e.uses_get)
        .map(|e| e.kind)
        .collect()
}

/// The file holding what a kind's mapping will really receive: the list model, unless it reads
/// the full model with GetResource. The synthetic account kind is never listed.
fn received(kind: &str, with_get: &BTreeSet<String>) -> &'static str {
    if kind == "AWS::Account::Info" || with_get.contains(kind) {
        "input.json"
    } else {
        "list.json"
    }
}

#[test]
fn every_listed_kind_has_list_model_evidence_and_a_list_fixture_that_follows_it() {
    let table = list_models::table();
    let mut errors = Vec::new();
    for kind in REQUIRED_KINDS
        .iter()
        .filter(|k| **k != "AWS::Account::Info")
    {
        let evidence = table
            .get(*kind)
            .and_then(|e| e.get("evidence"))
            .and_then(Json::as_str);
        if evidence.is_none_or(str::is_empty) {
            errors.push(format!("{kind}: no evidence in list_models.json"));
        }
        let dir = fixture_dir(kind);
        let full = read_json(&dir.join("input.json"));
        let listed = read_json(&dir.join("list.json"));
        let expected: Vec<Json> = full
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let mut item = item.clone();
                item["Properties"] = list_models::list_model(kind, &item["Properties"]);
                item
            })
            .collect();
        if listed != Json::Array(expected) {
            errors.push(format!(
                "{kind}: list.json is not what list_models.json says ListResources returns of input.json; run tests/fixtures/aws/regenerate.py"
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Each kind maps to its golden entities from what it will really receive: the list model,
/// unless it uses GetResource. A field the list handler does not return would be null here.
#[test]
fn every_kind_maps_what_its_listing_really_gives_to_its_golden_entities() {
    let with_get = kinds_using_get_resource();
    assert_fixtures_map_to_expected(&fixtures_from(
        |kind| received(kind, &with_get),
        |item| Some(item.clone()),
    ));
}

/// GetResource costs a call per item: each kind that uses it maps something from the full model
/// that its list model lacks.
#[test]
fn every_kind_that_uses_get_resource_needs_it() {
    let with_get = kinds_using_get_resource();
    assert!(!with_get.is_empty());
    let listed = fixtures_from(
        |kind| {
            if with_get.contains(kind) {
                "list.json"
            } else {
                "input.json"
            }
        },
        |item| Some(item.clone()),
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("items.json");
    let all: Vec<Json> = listed
        .iter()
        .flat_map(|(_, items, _)| items.clone())
        .collect();
    fs::write(&input, Json::Array(all).to_string()).expect("write the combined fixture");
    let mut actual = mapped_entities(&input).into_iter();
    let mut needless = Vec::new();
    for (kind, items, expected) in &listed {
        let got: Vec<Json> = actual.by_ref().take(items.len()).collect();
        if with_get.contains(*kind) && &got == expected {
            needless.push(*kind);
        }
    }
    assert!(
        needless.is_empty(),
        "these kinds map the same from their list model, so GetResource is wasted: {needless:?}"
    );
}

#[test]
fn every_mapped_property_and_relation_exists_in_its_blueprint() {
    let bps = blueprints();
    let mut errors = Vec::new();
    let mut produced: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for entry in entries() {
        let at = format!("aws.yaml:{} ({})", entry.line, entry.kind);
        let Some(bp) = bps.get(&entry.blueprint) else {
            errors.push(format!(
                "{at}: blueprint {} is not in blueprints.json",
                entry.blueprint
            ));
            continue;
        };
        let schema = bp.properties();
        for (name, expr) in &entry.properties {
            match schema.get(name) {
                None => errors.push(format!(
                    "{at}: property {name} is not in {}",
                    entry.blueprint
                )),
                // Where the expression is a constant, its type must be the property's type.
                Some(def) => {
                    if let Ok(constant) = serde_json::from_str::<Json>(expr) {
                        let mut probe = Entity::new(&entry.blueprint, "probe");
                        probe.properties = Some([(name.clone(), constant)].into_iter().collect());
                        if let Err(e) = validate_entity(bp, &probe, false) {
                            errors.push(format!("{at}: property {name}: {e:?} (schema {def})"));
                        }
                    }
                }
            }
        }
        let relations = bp.relations();
        for name in entry.relations.keys() {
            if !relations.iter().any(|r| &r.name == name) {
                errors.push(format!(
                    "{at}: relation {name} is not in {}",
                    entry.blueprint
                ));
            }
        }
        let seen = produced.entry(entry.blueprint.clone()).or_default();
        seen.0.extend(entry.properties.keys().cloned());
        seen.1.extend(entry.relations.keys().cloned());
    }
    // The other direction: a blueprint property that no default mapping fills is dead weight
    // (and usually a typo on one side).
    for (id, (props, rels)) in &produced {
        let bp = &bps[id];
        for name in bp.properties().keys() {
            if !props.contains(name) {
                errors.push(format!("blueprint {id}: property {name} is never mapped"));
            }
        }
        for rel in bp.relations() {
            if !rels.contains(&rel.name) {
                errors.push(format!(
                    "blueprint {id}: relation {} is never mapped",
                    rel.name
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn blueprints_are_well_formed_and_relations_point_at_defined_blueprints() {
    let bps = blueprints();
    let port_types = ["string", "number", "boolean", "object", "array"];
    let mut errors = Vec::new();
    for (id, bp) in &bps {
        if !is_valid_blueprint_identifier(id) {
            errors.push(format!("{id}: not a valid blueprint identifier"));
        }
        if bp.0.get("title").and_then(Json::as_str).is_none() {
            errors.push(format!("{id}: no title"));
        }
        for (name, def) in bp.properties() {
            let ty = def.get("type").and_then(Json::as_str).unwrap_or("");
            if !port_types.contains(&ty) {
                errors.push(format!(
                    "{id}.{name}: type {ty:?} is not a Port property type"
                ));
            }
            if def.get("title").and_then(Json::as_str).is_none() {
                errors.push(format!("{id}.{name}: no title"));
            }
        }
        for rel in bp.relations() {
            if !bps.contains_key(&rel.target) {
                errors.push(format!(
                    "{id}.{}: target {} is not defined",
                    rel.name, rel.target
                ));
            }
            // Required relations would make every entity whose target is not listed yet fail.
            if rel.required {
                errors.push(format!("{id}.{}: relations must not be required", rel.name));
            }
        }
        if id != "awsAccount"
            && !bp
                .relations()
                .iter()
                .any(|r| r.name == "account" && r.target == "awsAccount")
        {
            errors.push(format!("{id}: no account relation to awsAccount"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_golden_entity_validates_against_its_blueprint() {
    let bps = blueprints();
    let mut errors = Vec::new();
    for kind in REQUIRED_KINDS {
        let expected = read_json(&fixture_dir(kind).join("expected.json"));
        for value in expected.as_array().into_iter().flatten() {
            let entity: Entity = match serde_json::from_value(value.clone()) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{kind}: expected entity is not an entity: {e}"));
                    continue;
                }
            };
            let Some(bp) = bps.get(&entity.blueprint) else {
                errors.push(format!("{kind}: unknown blueprint {}", entity.blueprint));
                continue;
            };
            if let Err(e) = validate_entity(bp, &entity, true) {
                errors.push(format!("{kind} {}: {e:?}", entity.identifier));
            }
            // Every relation value must name an entity the target blueprint's mapping can produce:
            // accounts by id, everything else by ARN.
            for (name, target) in entity.relation_targets() {
                let ok = if name == "account" {
                    target.len() == 12 && target.chars().all(|c| c.is_ascii_digit())
                } else {
                    target.starts_with("arn:")
                };
                if !ok {
                    errors.push(format!(
                        "{kind} {}: relation {name} = {target:?}",
                        entity.identifier
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The partition an ARN for `region` must carry, and the host of its console (`None`: the
/// partition's console is on a closed network, so entities carry no link).
fn partition(region: &str) -> (&'static str, Option<&'static str>) {
    // Longest prefixes first: `us-iso-` is not `us-isob-`.
    const PARTITIONS: [(&str, &str, Option<&str>); 7] = [
        ("cn-", "aws-cn", Some("console.amazonaws.cn")),
        (
            "us-gov-",
            "aws-us-gov",
            Some("console.amazonaws-us-gov.com"),
        ),
        ("us-isob-", "aws-iso-b", None),
        ("us-isof-", "aws-iso-f", None),
        ("us-iso-", "aws-iso", None),
        ("eu-isoe-", "aws-iso-e", None),
        ("eusc-", "aws-eusc", Some("console.amazonaws-eusc.eu")),
    ];
    PARTITIONS
        .iter()
        .find(|(prefix, _, _)| region.starts_with(prefix))
        .map_or(("aws", Some("console.aws.amazon.com")), |(_, p, c)| {
            (*p, *c)
        })
}

/// One region of every partition (issue 14): ARNs and console links follow the item's region.
const PARTITION_REGIONS: [&str; 8] = [
    "eu-west-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-iso-east-1",
    "us-isob-east-1",
    "eu-isoe-west-1",
    "us-isof-south-1",
    "eusc-de-east-1",
];

#[test]
fn identifiers_and_links_follow_the_partition_of_every_region() {
    let items: Vec<(&str, Json)> = REQUIRED_KINDS
        .iter()
        .filter(|k| **k != "AWS::Account::Info")
        .map(|&kind| {
            let items = read_json(&fixture_dir(kind).join("input.json"));
            let first = items
                .as_array()
                .and_then(|a| a.iter().find(|i| i.get("__Region").is_none()))
                .unwrap_or_else(|| panic!("{kind}: a fixture item without its own region"))
                .clone();
            (kind, first)
        })
        .collect();
    let mut errors = Vec::new();
    for region in PARTITION_REGIONS {
        let (partition, console) = partition(region);
        let tmp = tempfile::tempdir().expect("temp dir");
        let input = tmp.path().join("items.json");
        let all: Vec<Json> = items
            .iter()
            .map(|(kind, item)| {
                let mut item = item.clone();
                item["Type"] = json!(kind);
                item["__Region"] = json!(region);
                item
            })
            .collect();
        fs::write(&input, Json::Array(all).to_string()).expect("write the items");
        let entities = mapped_entities(&input);
        assert_eq!(entities.len(), items.len(), "{region}: one entity per item");
        for ((kind, item), entity) in items.iter().zip(&entities) {
            let id = entity["identifier"].as_str().unwrap_or_default();
            let parts: Vec<&str> = id.splitn(6, ':').collect();
            // An ARN that Cloud Control returned (as the identifier or a property) is AWS's own
            // and keeps the fixture's partition and region.
            let returned = item.to_string().contains(&format!("\"{id}\""));
            if !returned
                && (parts.len() != 6
                    || parts[1] != partition
                    || !(parts[3].is_empty() || parts[3] == region))
            {
                errors.push(format!(
                    "{kind} in {region}: {id:?} is not an {partition} ARN"
                ));
            }
            let link = &entity["properties"]["link"];
            match (console, link) {
                (None, Json::Null) => {}
                (Some(host), Json::String(url)) if url.starts_with(&format!("https://{host}/")) => {
                }
                _ => errors.push(format!(
                    "{kind} in {region}: link {link} should be on {console:?}"
                )),
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn identifiers_are_arns_in_the_items_partition_account_and_region() {
    let mut errors = Vec::new();
    for kind in REQUIRED_KINDS {
        let dir = fixture_dir(kind);
        let items = read_json(&dir.join("input.json"));
        let expected = read_json(&dir.join("expected.json"));
        let (Some(items), Some(expected)) = (items.as_array(), expected.as_array()) else {
            panic!("{kind}: fixtures must be arrays");
        };
        assert_eq!(items.len(), expected.len(), "{kind}: one entity per item");
        for (item, entity) in items.iter().zip(expected) {
            let account = item["__AccountId"].as_str().unwrap_or(ACCOUNT);
            let region = item["__Region"].as_str().unwrap_or(REGION);
            let id = entity["identifier"].as_str().unwrap_or_default();
            if kind == "AWS::Account::Info" {
                if id != account {
                    errors.push(format!(
                        "{kind}: account entity {id:?} is not the account id"
                    ));
                }
                continue;
            }
            // arn:partition:service:region:account:resource; region and account are empty for
            // services whose ARNs omit them (S3, IAM, CloudFront, Route 53, API Gateway).
            let parts: Vec<&str> = id.splitn(6, ':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[1] == partition(region).0
                && (parts[3].is_empty() || parts[3] == region)
                && (parts[4].is_empty() || parts[4] == account)
                && !parts[5].is_empty();
            if !ok {
                errors.push(format!(
                    "{kind}: {id:?} is not an ARN in {account}/{region}"
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// jq paths that hold secret values, or that let a mapping read the process environment.
const FORBIDDEN_IN_EXPRESSIONS: [&str; 14] = [
    "$ENV",
    "env.",
    "env[",
    "| env",
    "Environment",
    "Secrets",
    "SecretString",
    "GenerateSecretString",
    "Password",
    "MasterUserSecret",
    "TdeCredential",
    "OriginCustomHeaders",
    "HeaderValue",
    "CertificateAuthorityData",
];

#[test]
fn no_default_mapping_reads_environment_variables_or_secret_values() {
    let mut errors = Vec::new();
    for entry in entries() {
        for (path, expr) in &entry.expressions {
            for token in FORBIDDEN_IN_EXPRESSIONS {
                if expr.contains(token) {
                    errors.push(format!(
                        "aws.yaml:{} ({}) {path} mentions {token}: {expr}",
                        entry.line, entry.kind
                    ));
                }
            }
            if expr
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| w == "env")
            {
                errors.push(format!("{} {path} calls env: {expr}", entry.kind));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn secret_values_planted_in_fixtures_never_reach_an_entity() {
    let fixtures = fixtures(|item| Some(item.clone()));
    let planted = Json::Array(
        fixtures
            .iter()
            .flat_map(|(_, items, _)| items.clone())
            .collect(),
    );
    let planted_text = planted.to_string();
    for canary in SECRET_CANARIES {
        assert!(
            planted_text.contains(canary),
            "the fixtures lost the planted {canary:?}, so this test would prove nothing"
        );
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("items.json");
    fs::write(&input, planted_text).expect("write the combined fixture");
    let out = run_map(&input);
    assert!(out.status.success(), "tidemark map failed");
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for canary in SECRET_CANARIES {
            assert!(!text.contains(canary), "{canary} reached the output");
        }
    }
}

/// GetResource costs one call per item, so it is only for kinds whose list handler returns too
/// little, and each such entry says why in the comment right above it.
#[test]
fn every_get_resource_entry_explains_why_in_a_comment() {
    let text = fs::read_to_string(mapping_path()).expect("mappings/aws.yaml is readable");
    let lines: Vec<&str> = text.lines().collect();
    let tree = mapping_tree();
    let resources = tree
        .get("resources")
        .and_then(Node::as_seq)
        .expect("aws.yaml has a resources list");
    let mut with_get = Vec::new();
    for res in resources {
        let uses_get = res
            .at_pointer("/selector/useGetResourceAPI")
            .is_some_and(|n| n.scalar_text().as_deref() == Some("true"));
        if !uses_get {
            continue;
        }
        let kind = res.get("kind").and_then(Node::as_str).unwrap_or_default();
        with_get.push(kind.to_string());
        // The entry's node starts at its first key (`kind:`); the comment block sits above it.
        let comment: Vec<&str> = lines[..res.pos.line.saturating_sub(1)]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .copied()
            .collect();
        assert!(
            comment.iter().any(|l| l.contains("GetResource")),
            "{kind} (aws.yaml:{}) uses GetResource without a comment saying why",
            res.pos.line
        );
    }
    assert!(
        !with_get.is_empty(),
        "no entry uses GetResource, so this test checked nothing"
    );
}
