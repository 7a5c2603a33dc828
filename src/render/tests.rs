//! Golden tests of the rendered plan. Set `UPDATE_GOLDEN=1` to rewrite the files, then review the
//! diff as carefully as code.

use serde_json::json;

use super::*;
use crate::reconcile::plan::*;
use crate::source::{Discovery, DiscoveryStatus};

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; run with UPDATE_GOLDEN=1 and review",
        path.display()
    );
}

fn sample() -> Plan {
    Plan {
        format_version: "1".into(),
        integration: "aws-prod".into(),
        summary: Summary {
            create: 1,
            update: 1,
            delete: 1,
            unchanged: 40,
            withheld: 1,
        },
        blueprints: vec![BlueprintPlan {
            action: Action::Create,
            identifier: "awsS3Bucket".into(),
            definition: Some(crate::model::Blueprint(
                json!({"identifier": "awsS3Bucket", "title": "S3 Bucket"}),
            )),
            add_properties: Default::default(),
            add_relations: Default::default(),
        }],
        changes: vec![
            Change {
                action: Action::Create,
                blueprint: "awsS3Bucket".into(),
                identifier: "arn:aws:s3:::new".into(),
                account: Some("222222222222".into()),
                kind: Some("AWS::S3::Bucket".into()),
                before: None,
                after: Some(
                    json!({"title": "new", "properties": {"region": "us-east-1"}, "relations": {"account": "222222222222"}}),
                ),
                previous_account: None,
                adopted_from: None,
                write: Some(Default::default()),
            },
            Change {
                action: Action::Update,
                blueprint: "awsS3Bucket".into(),
                identifier: "arn:aws:s3:::b1".into(),
                account: Some("222222222222".into()),
                kind: Some("AWS::S3::Bucket".into()),
                before: Some(
                    json!({"title": "b1", "icon": null, "team": [], "properties": {"region": "us-east-1", "versioning": true}, "relations": {}}),
                ),
                after: Some(
                    json!({"title": "b1", "icon": null, "team": [], "properties": {"region": "eu-west-1", "versioning": true}, "relations": {}}),
                ),
                previous_account: None,
                adopted_from: None,
                write: Some(Default::default()),
            },
            Change {
                action: Action::Delete,
                blueprint: "awsS3Bucket".into(),
                identifier: "arn:aws:s3:::gone".into(),
                account: Some("222222222222".into()),
                kind: Some("AWS::S3::Bucket".into()),
                before: Some(json!({"title": "gone", "properties": {}, "relations": {}})),
                after: None,
                previous_account: None,
                adopted_from: None,
                write: None,
            },
        ],
        withheld: vec![Withheld {
            action: Action::Delete,
            blueprint: "awsS3Bucket".into(),
            identifier: "arn:aws:s3:::old".into(),
            account: Some("333333333333".into()),
            kind: None,
            reason: Reason::AccountUnassumable,
            detail: "AccessDenied: not authorized to perform sts:AssumeRole".into(),
        }],
        discovery: Discovery {
            status: DiscoveryStatus::Ok,
            error: None,
        },
        accounts: vec![
            AccountLine {
                id: "222222222222".into(),
                name: Some("prod".into()),
                status: AccountStatus::Ok,
                error: None,
            },
            AccountLine {
                id: "333333333333".into(),
                name: Some("staging".into()),
                status: AccountStatus::Unassumable,
                error: Some("AccessDenied: not authorized to perform sts:AssumeRole".into()),
            },
        ],
        scopes: vec![ScopeLine {
            account: "222222222222".into(),
            region: "eu-west-1".into(),
            kind: "AWS::Lambda::Function".into(),
            model: None,
            status: "failed".into(),
            error: Some("ThrottlingException: Rate exceeded".into()),
        }],
        warnings: vec![Issue {
            account: Some("222222222222".into()),
            region: Some("us-east-1".into()),
            kind: Some("AWS::S3::Bucket".into()),
            item: Some("my-bucket".into()),
            message: "property \"owner\": .Tags.owner gave no output; null".into(),
        }],
        mapping_errors: vec![],
        basis: Basis {
            catalog: "port https://api.port.io".into(),
            config_hash: "c0ffee".into(),
            allow_mass_delete: MassDelete::None,
            adopt: false,
            accounts: [("222222222222".to_string(), "abc".to_string())].into(),
        },
    }
}

#[test]
fn the_text_plan_matches_its_golden_file() {
    golden("plan.txt", &text(&sample(), Style { color: false }));
}

#[test]
fn the_text_plan_is_coloured_only_when_asked() {
    assert!(text(&sample(), Style { color: true }).contains("\x1b[32m"));
    assert!(!text(&sample(), Style { color: false }).contains('\x1b'));
}

#[test]
fn the_markdown_plan_matches_its_golden_file() {
    golden("plan.md", &markdown(&sample()));
}

#[test]
fn the_json_plan_matches_its_golden_file() {
    golden("plan.json", &json(&sample()));
}

#[test]
fn an_empty_plan_says_there_are_no_changes() {
    let mut plan = sample();
    plan.changes.clear();
    plan.blueprints.clear();
    plan.withheld.clear();
    plan.summary = Summary {
        unchanged: 7,
        ..Default::default()
    };
    assert!(
        text(&plan, Style { color: false })
            .starts_with("No changes: the catalog matches the resources (7 unchanged).")
    );
}
