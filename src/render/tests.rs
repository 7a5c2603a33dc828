//! Golden tests of the rendered plan. Set `UPDATE_GOLDEN=1` to rewrite the files, then review the
//! diff as carefully as code.

use serde_json::json;

use super::*;
use crate::core::reconcile::plan::*;
use crate::core::report::{Discovery, DiscoveryStatus};

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
        shard: None,
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
            definition: Some(crate::core::model::Blueprint(
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
            status: ScopeStatus::Failed,
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
    golden(
        "plan.txt",
        &text(
            &sample(),
            Style {
                color: false,
                show_nulls: false,
            },
        ),
    );
}

#[test]
fn the_text_plan_is_coloured_only_when_asked() {
    assert!(
        text(
            &sample(),
            Style {
                color: true,
                show_nulls: false,
            }
        )
        .contains("\x1b[32m")
    );
    assert!(
        !text(
            &sample(),
            Style {
                color: false,
                show_nulls: false,
            }
        )
        .contains('\x1b')
    );
}

#[test]
fn the_markdown_plan_matches_its_golden_file() {
    golden("plan.md", &markdown(&sample(), false));
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
    plan.scopes.clear();
    plan.accounts.clear();
    plan.summary = Summary {
        unchanged: 7,
        ..Default::default()
    };
    assert!(
        text(
            &plan,
            Style {
                color: false,
                show_nulls: false,
            }
        )
        .starts_with("No changes: the catalog matches the resources (7 unchanged).")
    );
}

#[test]
fn a_plan_without_changes_whose_items_failed_to_map_never_says_the_catalog_matches() {
    let mut plan = sample();
    plan.changes.clear();
    plan.blueprints.clear();
    plan.withheld.clear();
    plan.accounts.clear();
    plan.mapping_errors = vec![Issue {
        account: Some("222222222222".into()),
        region: Some("us-east-1".into()),
        kind: Some("AWS::SQS::Queue".into()),
        item: Some("q1".into()),
        message: "identifier is null".into(),
    }];
    plan.summary = Summary {
        unchanged: 7,
        ..Default::default()
    };
    let style = Style {
        color: false,
        show_nulls: false,
    };
    let headline = text(&plan, style)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!headline.contains("matches"), "{headline}");
    assert!(
        headline.contains("1 item failed to map") && headline.contains("1 listing failed"),
        "{headline}"
    );
}

#[test]
fn creates_leave_null_fields_out_unless_asked() {
    let mut plan = sample();
    plan.changes.truncate(1);
    plan.changes[0].after = Some(json!({"title": "new", "icon": null,
        "properties": {"region": "us-east-1", "lifecycle": null}, "relations": {"vpc": null}}));
    let shown = |plan: &Plan, show_nulls| {
        text(
            plan,
            Style {
                color: false,
                show_nulls,
            },
        )
    };
    let short = shown(&plan, false);
    assert!(
        !short.contains("\"lifecycle\"") && !short.contains("\"icon\""),
        "{short}"
    );
    assert!(
        !short.contains("\"vpc\"") && short.contains("\"region\""),
        "{short}"
    );
    assert!(shown(&plan, true).contains("\"lifecycle\": null"));
    // An update still shows the null fields it compares.
    assert!(shown(&sample(), false).contains("\"icon\": null"));
}

#[test]
fn withheld_changes_with_one_account_and_reason_print_once_with_a_count() {
    let mut plan = sample();
    let first = plan.withheld[0].clone();
    for i in 0..2000 {
        let mut w = first.clone();
        w.identifier = format!("arn:aws:s3:::old-{i}");
        plan.withheld.push(w);
    }
    let style = Style {
        color: false,
        show_nulls: false,
    };
    let text = text(&plan, style);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("account_unassumable"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("2001 changes"), "{}", lines[0]);
    let md = markdown(&plan, false);
    assert_eq!(md.matches("| account_unassumable |").count(), 1, "{md}");
}

#[test]
fn a_markdown_plan_of_thousands_of_changes_stays_under_the_comment_limit() {
    let mut plan = sample();
    let template = plan.changes[0].clone();
    plan.changes = (0..5000)
        .map(|i| {
            let mut c = template.clone();
            c.blueprint = format!("bp{}", i % 7);
            c.identifier = format!("arn:aws:s3:::bucket-{i}");
            c
        })
        .collect();
    for i in 0..500 {
        plan.warnings.push(Issue {
            account: None,
            region: None,
            kind: None,
            item: Some(format!("item-{i}")),
            message: "x".repeat(200),
        });
    }
    let md = markdown(&plan, false);
    assert!(md.len() <= MARKDOWN_LIMIT, "{} characters", md.len());
    assert!(md.contains("more changes not shown"), "the rest is counted");
    assert!(md.contains("plan --out plan.json"));
    assert!(md.contains("more in the JSON plan"), "long lists are cut");
}
