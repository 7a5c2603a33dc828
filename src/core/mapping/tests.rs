//! One-line mapping tests: mapping file + item in, entities, warnings and errors out.

use serde_json::{Value as Json, json};

use super::*;
use crate::core::model::{RawItem, RegionPolicy};

/// What jq's `$ENV` shows in these tests.
fn test_env() -> Vec<(String, String)> {
    vec![("PATH".into(), "/usr/bin:/bin".into())]
}

fn load(yaml: &str) -> Mappings {
    let options = LoadOptions {
        env: test_env(),
        ..LoadOptions::default()
    };
    load_with(yaml, &options)
}

fn load_with(yaml: &str, options: &LoadOptions) -> Mappings {
    let source = MappingSource {
        name: "m.yaml".into(),
        text: yaml.into(),
    };
    match Mappings::load(&[source], options) {
        Ok((m, _)) => m,
        Err(errors) => panic!("mapping does not load: {errors:?}"),
    }
}

fn load_errors(yaml: &str) -> Vec<String> {
    let source = MappingSource {
        name: "m.yaml".into(),
        text: yaml.into(),
    };
    match Mappings::load(&[source], &LoadOptions::default()) {
        Ok(_) => panic!("mapping loaded but should not"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn load_warnings(yaml: &str) -> Vec<String> {
    let source = MappingSource {
        name: "m.yaml".into(),
        text: yaml.into(),
    };
    match Mappings::load(&[source], &LoadOptions::default()) {
        Ok((_, warnings)) => warnings.iter().map(ToString::to_string).collect(),
        Err(errors) => panic!("mapping does not load: {errors:?}"),
    }
}

fn item(kind: &str, region: &str, properties: Json) -> RawItem {
    RawItem {
        account: "111111111111".into(),
        account_name: Some("prod".into()),
        region: region.into(),
        kind: kind.into(),
        identifier: "id-1".into(),
        model: None,
        properties,
    }
}

fn bucket(properties: Json) -> RawItem {
    item("AWS::S3::Bucket", "us-east-1", properties)
}

/// A one-entry mapping for S3 buckets with the given `mappings:` body (indented 10 spaces).
fn entry(mappings: &str) -> String {
    format!(
        "resources:\n  - kind: AWS::S3::Bucket\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n{mappings}"
    )
}

fn entities(outcome: &ItemOutcome) -> Vec<Json> {
    outcome
        .entities
        .iter()
        .map(|m| serde_json::to_value(&m.entity).expect("serialisable"))
        .collect()
}

#[test]
fn an_item_maps_to_the_fields_the_mapping_defines() {
    let m = load(&entry(
        "          identifier: .Properties.Arn\n          title: .Identifier\n          blueprint: '\"awsS3Bucket\"'\n          properties:\n            region: .__Region\n            tags: '.Properties.Tags | map({(.Key): .Value}) | add'\n          relations:\n            account: .__AccountId\n",
    ));
    let out = m.map_item(&bucket(
        json!({"Arn": "arn:aws:s3:::b", "Tags": [{"Key": "env", "Value": "prod"}]}),
    ));
    assert_eq!(
        entities(&out),
        vec![
            json!({"identifier": "arn:aws:s3:::b", "blueprint": "awsS3Bucket", "title": "id-1",
                    "properties": {"region": "us-east-1", "tags": {"env": "prod"}},
                    "relations": {"account": "111111111111"}})
        ]
    );
    assert!(out.warnings.is_empty() && out.errors.is_empty(), "{out:?}");
    assert_eq!(out.entities[0].write, WriteOptions::default());
}

#[test]
fn single_quoted_literals_are_rewritten_as_ocean_does() {
    let m = load(&entry(
        "          identifier: \"'arn:' + .Identifier\"\n          blueprint: \"'awsS3Bucket'\"\n          title: \"'it's'\"\n",
    ));
    let out = m.map_item(&bucket(json!({})));
    assert_eq!(
        entities(&out),
        vec![json!({"identifier": "arn:id-1", "blueprint": "awsS3Bucket", "title": "it's"})]
    );
}

#[test]
fn yaml_scalars_that_are_not_strings_are_jq_literals() {
    let m = load(&entry(
        "          identifier: .Identifier\n          blueprint: '\"b\"'\n          properties:\n            on: true\n            n: 5\n",
    ));
    assert_eq!(
        entities(&m.map_item(&bucket(json!({})))),
        vec![json!({"identifier": "id-1", "blueprint": "b", "properties": {"on": true, "n": 5}})]
    );
}

#[test]
fn failing_or_empty_optional_fields_become_null_with_a_warning() {
    let m = load(&entry(
        "          identifier: .Identifier\n          blueprint: '\"b\"'\n          title: error(\"no title\")\n          icon: empty\n          properties:\n            missing: .Properties.Nope\n            bad: .Properties.S | tonumber\n",
    ));
    let out = m.map_item(&bucket(json!({"S": "abc"})));
    assert_eq!(
        entities(&out),
        vec![
            json!({"identifier": "id-1", "blueprint": "b", "title": null, "icon": null,
                    "properties": {"missing": null, "bad": null}})
        ]
    );
    assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("title") && out.warnings[0].contains("no title"));
    assert!(out.warnings[1].contains("icon") && out.warnings[1].contains("no output"));
    assert!(out.warnings[2].contains("properties.bad"));
    assert!(out.errors.is_empty());
}

#[test]
fn a_null_identifier_is_a_mapping_error() {
    let m = load(&entry(
        "          identifier: .Properties.Arn\n          blueprint: '\"b\"'\n",
    ));
    let out = m.map_item(&bucket(json!({})));
    assert!(out.entities.is_empty());
    assert_eq!(out.errors.len(), 1);
    assert!(
        // The message names the expression's place, so a user knows what to fix.
        out.errors[0].starts_with("m.yaml:8:23: identifier is null"),
        "{}",
        out.errors[0]
    );
}

#[test]
fn a_blueprint_that_is_not_a_string_is_a_mapping_error() {
    let m = load(&entry(
        "          identifier: .Identifier\n          blueprint: '5'\n",
    ));
    let out = m.map_item(&bucket(json!({})));
    assert!(out.entities.is_empty());
    assert!(
        out.errors[0].starts_with("m.yaml:9:22: blueprint 5 is not a string"),
        "{}",
        out.errors[0]
    );
}

#[test]
fn identifiers_port_would_reject_are_mapping_errors() {
    let m = load(&entry(
        "          identifier: .Properties.Name\n          blueprint: '\"b\"'\n",
    ));
    for bad in [
        json!("has space"),
        json!("."),
        json!(".."),
        json!("x".repeat(1001)),
    ] {
        let out = m.map_item(&bucket(json!({"Name": bad})));
        assert!(out.entities.is_empty(), "{bad} was accepted");
        assert!(
            out.errors[0].contains("not a valid Port identifier"),
            "{}",
            out.errors[0]
        );
    }
    let ok = m.map_item(&bucket(json!({"Name": "arn:aws:s3:::a/b=c@d+e\\f-g_h.i"})));
    assert_eq!(ok.entities.len(), 1, "{ok:?}");
}

#[test]
fn a_selector_that_is_not_a_boolean_is_a_mapping_error_and_false_skips_silently() {
    let yaml = |query: &str| {
        format!(
            "resources:\n  - kind: AWS::S3::Bucket\n    selector:\n      query: '{query}'\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"b\"'\n"
        )
    };
    let out = load(&yaml(".Properties.Keep")).map_item(&bucket(json!({"Keep": "yes"})));
    assert!(out.entities.is_empty());
    assert!(out.errors[0].contains("not a boolean"), "{:?}", out.errors);

    let out = load(&yaml(".Properties.Keep")).map_item(&bucket(json!({"Keep": false})));
    assert_eq!(out, ItemOutcome::default());

    let out = load(&yaml(".Properties.Keep == true")).map_item(&bucket(json!({"Keep": true})));
    assert_eq!(out.entities.len(), 1);
}

#[test]
fn a_list_of_mappings_gives_several_entities_per_item() {
    let m = load(&entry(
        "          - identifier: .Identifier\n            blueprint: '\"bucket\"'\n          - identifier: '.Identifier + \"-policy\"'\n            blueprint: '\"policy\"'\n            title: '\"p\"'\n",
    ));
    assert_eq!(
        entities(&m.map_item(&bucket(json!({})))),
        vec![
            json!({"identifier": "id-1", "blueprint": "bucket"}),
            json!({"identifier": "id-1-policy", "blueprint": "policy", "title": "p"})
        ]
    );
}

#[test]
fn items_to_parse_maps_each_element_with_the_parsed_array_removed() {
    let yaml = "resources:\n  - kind: AWS::S3::Bucket\n    selector:\n      query: .item.On\n    port:\n      itemsToParse: .Properties.Rules\n      entity:\n        mappings:\n          identifier: .Identifier + \"/\" + .item.Id\n          blueprint: '\"rule\"'\n          properties:\n            rest: .Properties | keys\n            region: .__Region\n";
    let out = load(yaml).map_item(&bucket(json!({"Rules": [
        {"Id": "r1", "On": true}, {"Id": "r2", "On": false}, {"Id": "r3", "On": true}], "Other": 1})));
    assert_eq!(
        entities(&out),
        vec![
            json!({"identifier": "id-1/r1", "blueprint": "rule", "properties": {"rest": ["Other"], "region": "us-east-1"}}),
            json!({"identifier": "id-1/r3", "blueprint": "rule", "properties": {"rest": ["Other"], "region": "us-east-1"}})
        ]
    );
}

#[test]
fn items_to_parse_name_and_transform_can_be_changed() {
    let yaml = "resources:\n  - kind: AWS::S3::Bucket\n    port:\n      itemsToParse: .Properties.Rules\n      itemsToParseName: rule\n      itemsToParseTopLevelTransform: false\n      entity:\n        mappings:\n          identifier: .rule\n          blueprint: '\"rule\"'\n          title: .Properties.Rules | length | tostring\n";
    let out = load(yaml).map_item(&bucket(json!({"Rules": ["a", "b"]})));
    assert_eq!(
        entities(&out),
        vec![
            json!({"identifier": "a", "blueprint": "rule", "title": "2"}),
            json!({"identifier": "b", "blueprint": "rule", "title": "2"})
        ]
    );
}

#[test]
fn items_to_parse_that_is_not_an_array_is_a_mapping_error() {
    let yaml = "resources:\n  - kind: AWS::S3::Bucket\n    port:\n      itemsToParse: .Properties.Rules\n      entity:\n        mappings:\n          identifier: .item\n          blueprint: '\"rule\"'\n";
    let out = load(yaml).map_item(&bucket(json!({"Rules": "x"})));
    assert!(out.entities.is_empty());
    assert!(out.errors[0].contains("not an array"), "{:?}", out.errors);
}

#[test]
fn region_policies_apply_per_entry() {
    let yaml = "resources:\n  - kind: AWS::EC2::Instance\n    selector:\n      regionPolicy:\n        allow: [eu-west-1]\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"eu\"'\n  - kind: AWS::EC2::Instance\n    selector:\n      regionPolicy:\n        deny: [eu-west-1]\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"other\"'\n";
    let m = load(yaml);
    let blueprints = |region: &str| -> Vec<String> {
        m.map_item(&item("AWS::EC2::Instance", region, json!({})))
            .entities
            .into_iter()
            .map(|e| e.entity.blueprint)
            .collect()
    };
    assert_eq!(blueprints("eu-west-1"), vec!["eu"]);
    assert_eq!(blueprints("us-east-1"), vec!["other"]);
    assert_eq!(
        m.kinds()[0].region_policy,
        RegionPolicy {
            allow: vec![],
            deny: vec![]
        }
    );
}

#[test]
fn kinds_combine_the_selectors_of_all_entries_with_the_same_resource_model() {
    let yaml = "resources:\n  - kind: A::B::C\n    selector:\n      regionPolicy: {allow: [r1], deny: [r3, r4]}\n      resourceModel: {x: 1, y: [2]}\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"one\"'}}}\n  - kind: A::B::C\n    selector:\n      regionPolicy: {allow: [r2], deny: [r4]}\n      useGetResourceAPI: true\n      resourceModel: {y: [2], x: 1}\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"two\"'}}}\n  - kind: D::E::F\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: .Properties.B}}}\n";
    let m = load(yaml);
    let kinds = m.kinds();
    assert_eq!(kinds.len(), 2);
    assert_eq!(kinds[0].kind, "A::B::C");
    assert_eq!(
        kinds[0].region_policy,
        RegionPolicy {
            allow: vec!["r1".into(), "r2".into()],
            deny: vec!["r4".into()]
        }
    );
    assert!(kinds[0].use_get_resource_api);
    // The same model in another key order is the same listing.
    assert_eq!(kinds[0].model().as_deref(), Some(r#"{"x":1,"y":[2]}"#));
    assert!(!kinds[1].use_get_resource_api);
    assert_eq!(
        m.producible_blueprints("A::B::C"),
        Producible::Only(["one".to_string(), "two".to_string()].into())
    );
    assert_eq!(m.producible_blueprints("D::E::F"), Producible::Any);
    assert_eq!(
        m.producible_blueprints("X::Y::Z"),
        Producible::Only(Default::default())
    );
}

#[test]
fn file_flags_and_the_smallest_threshold_are_reported() {
    let a = MappingSource {
        name: "a.yaml".into(),
        text: "enableMergeEntity: false\ncreateMissingRelatedEntities: false\ndeleteDependentEntities: false\nentityDeletionThreshold: 0.5\nresources:\n  - kind: K::K::K\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"b\"'}}}\n".into(),
    };
    let b = MappingSource {
        name: "b.yaml".into(),
        text: "resources: []\n".into(),
    };
    let (m, _) = Mappings::load(&[a, b], &LoadOptions::default()).expect("loads");
    assert_eq!(
        m.file_flags(),
        vec![
            (
                "a.yaml".to_string(),
                FileFlags {
                    delete_dependent_entities: false,
                    create_missing_related_entities: false,
                    enable_merge_entity: false,
                    entity_deletion_threshold: 0.5
                }
            ),
            (
                "b.yaml".to_string(),
                FileFlags {
                    delete_dependent_entities: true,
                    create_missing_related_entities: true,
                    enable_merge_entity: true,
                    entity_deletion_threshold: 0.9
                }
            )
        ]
    );
    assert_eq!(m.deletion_threshold(), 0.5);
    let out = m.map_item(&item("K::K::K", "r", json!({})));
    assert_eq!(
        out.entities[0].write,
        WriteOptions {
            merge: false,
            create_missing_related: false
        }
    );
    let none = Mappings::load(&[], &LoadOptions::default())
        .expect("loads")
        .0;
    assert_eq!(none.deletion_threshold(), 0.9);
}

#[test]
fn env_and_dollar_env_hide_the_named_variables() {
    let yaml = entry(
        "          identifier: .Identifier\n          blueprint: '\"b\"'\n          properties:\n            a: env.PATH\n            b: $ENV.PATH\n",
    );
    let hidden = LoadOptions {
        env: test_env(),
        hidden_env: vec!["PATH".into()],
        ..LoadOptions::default()
    };
    let props =
        entities(&load_with(&yaml, &hidden).map_item(&bucket(json!({}))))[0]["properties"].clone();
    assert_eq!(props, json!({"a": null, "b": null}));
    let props = entities(&load(&yaml).map_item(&bucket(json!({}))))[0]["properties"].clone();
    assert!(props["a"].is_string() && props["b"].is_string(), "{props}");
}

#[test]
fn every_compile_error_is_reported_with_its_position() {
    let errors = load_errors(&entry(
        "          identifier: .Identifier |\n          blueprint: '\"b\"'\n          title: nosuchfn(1)\n          properties:\n            a: .x\n            b: '{a:'\n",
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("m.yaml:8:"), "{}", errors[0]);
    assert!(errors[0].contains("`.Identifier |`"), "{}", errors[0]);
    assert!(errors[1].starts_with("m.yaml:10:18:"), "{}", errors[1]);
    assert!(errors[1].contains("nosuchfn/1"), "{}", errors[1]);
    assert!(errors[2].starts_with("m.yaml:13:"), "{}", errors[2]);
}

#[test]
fn unknown_keys_are_errors_with_their_position_and_a_did_you_mean() {
    let errors = load_errors(
        "someIntegrationKey: 1\nresources:\n  - kind: K::K::K\n    extra: x\n    selctor:\n      query: 'false'\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"b\"', titel: '1'}}}\n",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].starts_with("m.yaml:1:1: unknown key someIntegrationKey;"),
        "{}",
        errors[0]
    );
    assert!(
        errors.iter().any(|e| e.starts_with(
            "m.yaml:5:5: unknown key resources[0].selctor (did you mean resources[0].selector?)"
        )),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown key resources[0].port.entity.mappings.titel (did you mean resources[0].port.entity.mappings.title?)")),
        "{errors:#?}"
    );
}

#[test]
fn keys_of_oceans_aws_integrations_that_tidemark_does_not_use_are_warnings() {
    let warnings = load_warnings(
        "resources:\n  - kind: K::K::K\n    selector:\n      query: 'true'\n      includeActions: [GetBucketTagging]\n      maxConcurrentAccounts: 10\n      exportEnvVariables: [A]\n      listGroupResources: true\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"b\"'}}}\n",
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(
        warnings[0].contains("resources[0].selector.includeActions is Ocean aws-v3's")
            && warnings[0].contains("tidemark does not use it"),
        "{}",
        warnings[0]
    );
}

#[test]
fn warnings_of_one_file_are_reported_when_another_file_has_errors() {
    let ocean = MappingSource {
        name: "ocean.yaml".into(),
        text: "resources:\n  - kind: K\n    selector: {query: 'true', maxConcurrentAccounts: 3}\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"b\"'}}}\n".into(),
    };
    let broken = MappingSource {
        name: "broken.yaml".into(),
        text: "resources:\n  - kind: K\n    port: {entity: {mappings: {identifier: .a |, blueprint: '\"b\"'}}}\n".into(),
    };
    let Err(diagnostics) = Mappings::load(&[ocean, broken], &LoadOptions::default()) else {
        panic!("broken.yaml does not compile");
    };
    let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics.iter().partition(|d| d.is_error());
    assert!(errors.iter().all(|e| e.file == "broken.yaml"), "{errors:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].file, "ocean.yaml");
}

#[test]
fn oceans_older_cloud_resource_form_maps_one_entry_per_listed_kind() {
    let yaml = "resources:\n  - kind: cloudResource\n    selector:\n      query: 'true'\n      resourceKinds: [AWS::SQS::Queue, AWS::SNS::Topic]\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '.__Kind | ascii_downcase'}}}\n";
    let warnings = load_warnings(yaml);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("Ocean's older form")
            && warnings[0].contains("- kind: AWS::SQS::Queue"),
        "{}",
        warnings[0]
    );
    let m = load(yaml);
    let kinds: Vec<String> = m.kinds().into_iter().map(|k| k.kind).collect();
    assert_eq!(kinds, ["AWS::SQS::Queue", "AWS::SNS::Topic"]);
    let out = m.map_item(&item("AWS::SNS::Topic", "us-east-1", json!({})));
    assert_eq!(out.entities[0].entity.blueprint, "aws::sns::topic");
    assert!(load_errors("resources:\n  - kind: cloudResource\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"b\"'}}}\n")[0]
        .contains("needs selector.resourceKinds"));
}

#[test]
fn search_query_identifiers_are_rejected() {
    let errors = load_errors(&entry(
        "          identifier:\n            combinator: and\n            rules: [{property: x, operator: '=', value: y}]\n          blueprint: '\"b\"'\n",
    ));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("search-query identifiers"),
        "{}",
        errors[0]
    );
}

#[test]
fn malformed_files_get_clear_errors() {
    assert!(load_errors("")[0].contains("empty"));
    assert!(load_errors("- kind: x\n")[0].contains("found a list"));
    assert!(load_errors("resources: 5\n")[0].contains("resources must be a list"));
    assert!(load_errors("resources:\n  - kind: [a]\n    port: {entity: {mappings: {identifier: .a, blueprint: .b}}}\n")[0]
        .contains("kind must be a string"));
    assert!(
        load_errors("entityDeletionThreshold: 2\nresources: []\n")[0].contains("between 0 and 1")
    );
    assert!(
        load_errors("resources:\n  - kind: K\n    port: {entity: {mappings: {blueprint: .b}}}\n")
            [0]
        .contains("no `identifier`")
    );
    let errors = load_errors(
        "resources:\n  - kind: K\n    port: {entity: {mappings: {identifier: [1], blueprint: .b}}}\n",
    );
    assert!(errors[0].starts_with("m.yaml:3:"), "{errors:?}");
}

#[test]
fn items_of_other_kinds_map_to_nothing() {
    let m = load(&entry(
        "          identifier: .Identifier\n          blueprint: '\"b\"'\n",
    ));
    assert_eq!(
        m.map_item(&item("AWS::EC2::Instance", "us-east-1", json!({}))),
        ItemOutcome::default()
    );
}

#[test]
fn compiled_mappings_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mappings>();
    assert_send_sync::<Redactor>();
}

/// Two entries of one kind with different resource models (nodegroups of two EKS clusters).
const TWO_MODELS: &str = "resources:\n  - kind: AWS::EKS::Nodegroup\n    selector:\n      resourceModel: {ClusterName: blue}\n      regionPolicy: {allow: [us-east-1]}\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"ng\"', team: '[\"blue\"]'}}}\n  - kind: AWS::EKS::Nodegroup\n    selector:\n      resourceModel: {ClusterName: green}\n      regionPolicy: {allow: [eu-west-1]}\n      useGetResourceAPI: true\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"ng\"', team: '[\"green\"]'}}}\n";

#[test]
fn each_resource_model_of_a_kind_is_its_own_listing_with_its_own_selector() {
    let kinds = load(TWO_MODELS).kinds();
    let specs: Vec<(Option<String>, Vec<String>, bool)> = kinds
        .iter()
        .map(|k| {
            (
                k.model(),
                k.region_policy.allow.clone(),
                k.use_get_resource_api,
            )
        })
        .collect();
    assert_eq!(
        specs,
        vec![
            (
                Some(r#"{"ClusterName":"blue"}"#.to_string()),
                vec!["us-east-1".to_string()],
                false
            ),
            (
                Some(r#"{"ClusterName":"green"}"#.to_string()),
                vec!["eu-west-1".to_string()],
                true
            ),
        ]
    );
}

#[test]
fn an_item_listed_with_a_model_maps_only_with_the_entries_that_asked_for_it() {
    let m = load(TWO_MODELS);
    let mut listed = item("AWS::EKS::Nodegroup", "eu-west-1", json!({}));
    listed.model = Some(r#"{"ClusterName":"green"}"#.into());
    let teams: Vec<Json> = m
        .map_item(&listed)
        .entities
        .iter()
        .filter_map(|e| e.entity.team.clone())
        .collect();
    assert_eq!(teams, vec![json!(["green"])]);
    // An item that says nothing of its model (`tidemark map`, a fixture) maps with every entry
    // of its kind, as before.
    let mut given = item("AWS::EKS::Nodegroup", "us-east-1", json!({}));
    given.model = None;
    assert_eq!(m.map_item(&given).entities.len(), 1, "blue's region only");
    let mut anywhere = load(
        &TWO_MODELS
            .replace("regionPolicy: {allow: [us-east-1]}", "regionPolicy: {}")
            .replace("regionPolicy: {allow: [eu-west-1]}", "regionPolicy: {}"),
    );
    assert_eq!(anywhere.map_item(&given).entities.len(), 2);
    anywhere = load(&format!(
        "{TWO_MODELS}  - kind: AWS::EKS::Nodegroup\n    port: {{entity: {{mappings: {{identifier: .Identifier, blueprint: '\"plain\"'}}}}}}\n"
    ));
    // With an entry that lists without a model, a model-less item is that listing's.
    let plain: Vec<String> = anywhere
        .map_item(&given)
        .entities
        .iter()
        .map(|e| e.entity.blueprint.clone())
        .collect();
    assert_eq!(plain, vec!["plain".to_string()]);
}

/// Nodegroups of every listed EKS cluster, with no cluster entity mapped.
const FROM_CLUSTERS: &str = "resources:\n  - kind: AWS::EKS::Nodegroup\n    selector:\n      regionPolicy: {deny: [ap-east-1]}\n      resourceModelsFrom:\n        kind: AWS::EKS::Cluster\n        model: '{\"ClusterName\": .Identifier}'\n    port: {entity: {mappings: {identifier: .Identifier, blueprint: '\"ng\"'}}}\n";

#[test]
fn models_from_a_parent_list_the_parent_for_the_purpose_when_nothing_maps_it() {
    let kinds = load(FROM_CLUSTERS).kinds();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0].kind, "AWS::EKS::Nodegroup");
    assert_eq!(
        kinds[0].models_from,
        Some(crate::core::model::ModelsFrom {
            kind: "AWS::EKS::Cluster".into(),
            model: r#"{"ClusterName": .Identifier}"#.into(),
        })
    );
    assert_eq!(kinds[0].model(), None);
    // The parent, listed wherever the child is, mapped by nothing.
    assert_eq!(kinds[1].kind, "AWS::EKS::Cluster");
    assert_eq!(kinds[1].region_policy, kinds[0].region_policy);
    assert_eq!(kinds[1].models_from, None);
}

#[test]
fn a_mapped_parent_is_listed_wherever_its_children_are() {
    let yaml = format!(
        "{FROM_CLUSTERS}  - kind: AWS::EKS::Cluster\n    selector:\n      regionPolicy: {{allow: [us-east-1]}}\n    port: {{entity: {{mappings: {{identifier: .Identifier, blueprint: '\"cluster\"'}}}}}}\n"
    );
    let m = load(&yaml);
    let kinds = m.kinds();
    assert_eq!(kinds.len(), 2);
    assert_eq!(kinds[1].kind, "AWS::EKS::Cluster");
    // Widened to the child's regions; its own entry still maps only us-east-1's clusters.
    assert_eq!(
        kinds[1].region_policy,
        RegionPolicy {
            allow: vec![],
            deny: vec![]
        }
    );
    let cluster = item("AWS::EKS::Cluster", "eu-west-1", json!({}));
    assert!(m.map_item(&cluster).entities.is_empty());
}

#[test]
fn a_derived_item_maps_with_its_entries_whatever_model_it_was_listed_with() {
    let m = load(FROM_CLUSTERS);
    let mut listed = item("AWS::EKS::Nodegroup", "eu-west-1", json!({}));
    listed.model = Some(r#"{"ClusterName":"any"}"#.into());
    assert_eq!(m.map_item(&listed).entities.len(), 1);
    listed.model = None;
    assert_eq!(m.map_item(&listed).entities.len(), 1);
}

#[test]
fn a_model_expression_derives_one_model_per_parent_item() {
    let expression = ModelExpression::compile(r#"{"ClusterName": .Identifier}"#).expect("compiles");
    let cluster = item("AWS::EKS::Cluster", "eu-west-1", json!({}));
    assert_eq!(
        expression.model_for(&cluster),
        Ok(Some(json!({"ClusterName": "id-1"})))
    );
    let none = ModelExpression::compile("empty").expect("compiles");
    assert_eq!(none.model_for(&cluster), Ok(None));
    let null = ModelExpression::compile(".Properties.Missing").expect("compiles");
    assert_eq!(null.model_for(&cluster), Ok(None));
    let odd = ModelExpression::compile(".Identifier").expect("compiles");
    let err = odd.model_for(&cluster).expect_err("a string is no model");
    assert!(err.contains("not an object"), "{err}");
}

#[test]
fn resource_models_from_is_checked_at_load_with_positions() {
    let bad_jq = FROM_CLUSTERS.replace(".Identifier}'", ".Identifier'");
    let errors = load_errors(&bad_jq);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("m.yaml:7:") && e.contains("resourceModelsFrom.model")),
        "{errors:?}"
    );
    let both = FROM_CLUSTERS.replace(
        "      resourceModelsFrom:",
        "      resourceModel: {ClusterName: x}\n      resourceModelsFrom:",
    );
    let errors = load_errors(&both);
    assert!(errors.iter().any(|e| e.contains("both")), "{errors:?}");
    let own = FROM_CLUSTERS.replace("kind: AWS::EKS::Cluster", "kind: AWS::EKS::Nodegroup");
    let errors = load_errors(&own);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("own kind"), "{errors:?}");
    let mixed = format!(
        "{FROM_CLUSTERS}  - kind: AWS::EKS::Nodegroup\n    selector:\n      resourceModel: {{ClusterName: blue}}\n    port: {{entity: {{mappings: {{identifier: .Identifier, blueprint: '\"ng\"'}}}}}}\n"
    );
    let errors = load_errors(&mixed);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("m.yaml:9:") && e.contains("m.yaml:2:")),
        "{errors:?}"
    );
    let cycle = format!(
        "{FROM_CLUSTERS}  - kind: AWS::EKS::Cluster\n    selector:\n      resourceModelsFrom: {{kind: AWS::EKS::Nodegroup, model: '{{}}'}}\n    port: {{entity: {{mappings: {{identifier: .Identifier, blueprint: '\"c\"'}}}}}}\n"
    );
    let errors = load_errors(&cycle);
    assert!(errors.iter().any(|e| e.contains("cycle")), "{errors:?}");
    let synthetic = FROM_CLUSTERS.replace("kind: AWS::EKS::Cluster", "kind: AWS::Account::Info");
    let errors = load_errors(&synthetic);
    assert!(
        errors.iter().any(|e| e.contains("AWS::Account::Info")),
        "{errors:?}"
    );
}
