//! Unit tests of the pure plan: one test per reconcile rule in docs/contract.md.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::plan::*;
use crate::core::mapping::Producible;
use crate::core::model::*;
use crate::core::report::{AccountReport, Discovery, DiscoveryStatus, Listing, SourceReport};

const A: &str = "222222222222";
const B: &str = "333333333333";
const BUCKET: &str = "AWS::S3::Bucket";
const QUEUE: &str = "AWS::SQS::Queue";

fn entity(bp: &str, id: &str, props: Json) -> Entity {
    let mut e = Entity::new(bp, id);
    e.title = Some(json!(id));
    e.properties = props.as_object().cloned();
    e.relations = Some(Default::default());
    e
}

fn desired(account: &str, kind: &str, e: Entity) -> Desired {
    Desired {
        origin: Origin {
            account: account.into(),
            kind: kind.into(),
            region: "us-east-1".into(),
            item: e.identifier.clone(),
        },
        entity: e,
        write: WriteOptions::default(),
    }
}

fn owned(account: &str, kind: &str, e: Entity) -> OwnedEntity {
    OwnedEntity {
        entity: e,
        account: Some(account.into()),
        kind: Some(kind.into()),
        placeholder: false,
    }
}

fn account(id: &str) -> AccountReport {
    AccountReport {
        id: id.into(),
        name: Some(format!("acct-{id}")),
        assumed: true,
        regions: vec!["us-east-1".into()],
        ..Default::default()
    }
}

fn report(accounts: Vec<AccountReport>) -> SourceReport {
    SourceReport {
        discovery: Discovery::ok(),
        accounts,
        listings: Vec::new(),
    }
}

struct Case {
    desired: Vec<Desired>,
    owned: Vec<OwnedEntity>,
    foreign: Vec<ForeignEntity>,
    foreign_references: Vec<ForeignReference>,
    report: SourceReport,
    mapping_errors: Vec<Issue>,
    warnings: Vec<Issue>,
    producible: BTreeMap<String, Producible>,
    threshold: f64,
    allow: MassDelete,
    adopt_prefixes: Vec<String>,
    adopt_all: bool,
    blueprints: Vec<Blueprint>,
}

impl Case {
    fn new() -> Case {
        let mut producible = BTreeMap::new();
        producible.insert(
            BUCKET.to_string(),
            Producible::Only(["bucket".to_string()].into()),
        );
        producible.insert(
            QUEUE.to_string(),
            Producible::Only(["queue".to_string()].into()),
        );
        Case {
            desired: Vec::new(),
            owned: Vec::new(),
            foreign: Vec::new(),
            foreign_references: Vec::new(),
            report: report(vec![account(A), account(B)]),
            mapping_errors: Vec::new(),
            warnings: Vec::new(),
            producible,
            threshold: 0.9,
            allow: MassDelete::None,
            adopt_prefixes: Vec::new(),
            adopt_all: false,
            blueprints: Vec::new(),
        }
    }

    /// `n` buckets in account A, desired and owned alike.
    fn steady(mut self, n: usize) -> Case {
        for i in 0..n {
            let e = entity("bucket", &format!("b{i}"), json!({"region": "us-east-1"}));
            self.desired.push(desired(A, BUCKET, e.clone()));
            self.owned.push(owned(A, BUCKET, e));
        }
        self
    }

    fn plan(self) -> Plan {
        plan(PlanInput {
            integration: "demo",
            adopt_prefixes: &self.adopt_prefixes,
            adopt_all: self.adopt_all,
            allow_mass_delete: self.allow,
            catalog: "local test".into(),
            config_hash: "hash".into(),
            desired: &self.desired,
            owned: self.owned,
            foreign: self.foreign,
            foreign_references: self.foreign_references,
            report: &self.report,
            mapping_errors: self.mapping_errors,
            warnings: self.warnings,
            producible: self.producible,
            threshold: self.threshold,
            desired_blueprints: &self.blueprints,
            catalog_blueprints: &[],
        })
    }
}

fn actions(plan: &Plan) -> Vec<(Action, String)> {
    plan.changes
        .iter()
        .map(|c| (c.action, c.identifier.clone()))
        .collect()
}

fn withheld(plan: &Plan) -> Vec<(Action, String, Reason)> {
    plan.withheld
        .iter()
        .map(|w| (w.action, w.identifier.clone(), w.reason))
        .collect()
}

#[test]
fn unchanged_entities_make_no_change() {
    let plan = Case::new().steady(5).plan();
    assert!(plan.changes.is_empty());
    assert_eq!(plan.summary.unchanged, 5);
    assert!(!plan.has_changes());
    assert!(!plan.is_partial());
}

#[test]
fn a_new_item_is_a_create_and_a_changed_one_an_update() {
    let mut case = Case::new().steady(3);
    case.desired[1].entity.properties = json!({"region": "eu-west-1"}).as_object().cloned();
    case.desired
        .push(desired(A, BUCKET, entity("bucket", "new", json!({}))));
    let plan = case.plan();
    assert_eq!(
        actions(&plan),
        vec![
            (Action::Update, "b1".into()),
            (Action::Create, "new".into())
        ]
    );
    let update = &plan.changes[0];
    assert_eq!(
        update
            .before
            .as_ref()
            .and_then(|b| b.pointer("/properties/region")),
        Some(&json!("us-east-1"))
    );
    assert_eq!(
        update
            .after
            .as_ref()
            .and_then(|b| b.pointer("/properties/region")),
        Some(&json!("eu-west-1"))
    );
    assert!(plan.changes[1].before.is_none());
}

#[test]
fn a_removed_resource_is_exactly_one_delete() {
    let mut case = Case::new().steady(5);
    case.desired.remove(2);
    let plan = case.plan();
    assert_eq!(actions(&plan), vec![(Action::Delete, "b2".into())]);
    assert!(plan.changes[0].after.is_none());
    assert!(!plan.is_partial());
}

#[test]
fn plan_withholds_deletes_for_a_failed_listing_of_a_kind_that_produces_the_blueprint() {
    let mut case = Case::new().steady(5);
    case.desired.remove(2);
    let q = entity("queue", "q-gone", json!({}));
    case.owned.push(owned(A, QUEUE, q));
    case.report.listings.push(Listing {
        account: A.into(),
        region: "us-east-1".into(),
        kind: BUCKET.into(),
        model: None,
        error: Some("AccessDenied: nope".into()),
        unavailable: false,
    });
    let plan = case.plan();
    // The bucket delete is withheld; the queue delete (a kind that listed fine) goes ahead.
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "b2".into(), Reason::ScopeFailed)]
    );
    assert_eq!(actions(&plan), vec![(Action::Delete, "q-gone".into())]);
    assert_eq!(plan.scopes.len(), 1);
    assert!(plan.is_partial());
}

fn missing_type(kind: &str, region: &str) -> Listing {
    Listing {
        account: A.into(),
        region: region.into(),
        kind: kind.into(),
        model: None,
        error: Some(format!(
            "TypeNotFoundException: The type '{kind}' cannot be found."
        )),
        unavailable: true,
    }
}

#[test]
fn a_type_missing_in_a_region_is_complete_when_no_delete_could_have_come_from_there() {
    let mut case = Case::new().steady(5);
    case.report.listings.push(missing_type(BUCKET, "ap-east-1"));
    let plan = case.plan();
    assert!(
        plan.withheld.is_empty() && plan.scopes.is_empty(),
        "{plan:?}"
    );
    assert!(!plan.is_partial());
}

#[test]
fn a_type_missing_in_a_region_withholds_only_the_deletes_it_could_have_produced() {
    let mut case = Case::new().steady(5);
    case.desired.remove(2);
    // The catalog knows this one came from SQS: a missing bucket type cannot have produced it.
    let mut q = owned(A, QUEUE, entity("bucket", "q-gone", json!({})));
    case.owned.push(q.clone());
    // Kind unknown (Port): it may have been a bucket in the missing region.
    q.entity.identifier = "unknown-gone".into();
    q.kind = None;
    case.owned.push(q);
    case.report.listings.push(missing_type(BUCKET, "ap-east-1"));
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![
            (Action::Delete, "b2".into(), Reason::ScopeFailed),
            (Action::Delete, "unknown-gone".into(), Reason::ScopeFailed),
        ]
    );
    assert!(
        plan.withheld[0]
            .detail
            .contains("does not exist in ap-east-1")
    );
    assert_eq!(actions(&plan), vec![(Action::Delete, "q-gone".into())]);
    assert_eq!(plan.scopes.len(), 1);
    assert_eq!(plan.scopes[0].region, "ap-east-1");
    assert!(plan.is_partial());
}

#[test]
fn a_scope_failure_in_one_account_does_not_protect_another() {
    let mut case = Case::new().steady(5);
    case.owned
        .push(owned(B, BUCKET, entity("bucket", "b-other", json!({}))));
    case.owned
        .push(owned(B, BUCKET, entity("bucket", "b-other2", json!({}))));
    case.owned
        .push(owned(B, BUCKET, entity("bucket", "b-other3", json!({}))));
    case.desired
        .push(desired(B, BUCKET, entity("bucket", "b-other2", json!({}))));
    case.desired
        .push(desired(B, BUCKET, entity("bucket", "b-other3", json!({}))));
    case.desired.remove(0);
    case.report.listings.push(Listing {
        account: A.into(),
        region: "us-east-1".into(),
        kind: BUCKET.into(),
        model: None,
        error: Some("ThrottlingException".into()),
        unavailable: false,
    });
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "b0".into(), Reason::ScopeFailed)]
    );
    assert_eq!(actions(&plan), vec![(Action::Delete, "b-other".into())]);
}

#[test]
fn an_unassumable_account_keeps_all_its_entities() {
    let mut case = Case::new().steady(3);
    case.desired.clear();
    case.report.accounts[0].assumed = false;
    case.report.accounts[0].error = Some("AccessDenied: check the trust policy".into());
    let plan = case.plan();
    assert!(plan.changes.is_empty());
    assert_eq!(plan.withheld.len(), 3);
    assert!(
        plan.withheld
            .iter()
            .all(|w| w.reason == Reason::AccountUnassumable)
    );
    assert!(plan.withheld[0].detail.contains("trust policy"));
    assert_eq!(plan.accounts[0].status, AccountStatus::Unassumable);
    assert!(plan.is_partial());
}

#[test]
fn a_mapping_error_makes_its_scope_incomplete() {
    let mut case = Case::new().steady(5);
    case.desired.remove(4);
    case.mapping_errors.push(Issue {
        account: Some(A.into()),
        region: Some("us-east-1".into()),
        kind: Some(BUCKET.into()),
        item: Some("b4".into()),
        message: "identifier is null".into(),
    });
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "b4".into(), Reason::MappingError)]
    );
    assert!(plan.changes.is_empty());
    assert!(plan.is_partial());
}

#[test]
fn a_kind_with_a_computed_blueprint_protects_every_blueprint() {
    let mut case = Case::new().steady(5);
    case.desired.remove(0);
    case.producible.insert(QUEUE.into(), Producible::Any);
    case.report.listings.push(Listing {
        account: A.into(),
        region: "us-east-1".into(),
        kind: QUEUE.into(),
        model: None,
        error: Some("AccessDenied".into()),
        unavailable: false,
    });
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "b0".into(), Reason::ScopeFailed)]
    );
}

#[test]
fn removing_a_kind_from_the_mappings_deletes_its_entities_even_in_a_failed_account() {
    let mut case = Case::new().steady(5);
    case.owned
        .push(owned(A, "AWS::Old::Thing", entity("old", "o1", json!({}))));
    case.report.listings.push(Listing {
        account: A.into(),
        region: "us-east-1".into(),
        kind: BUCKET.into(),
        model: None,
        error: Some("AccessDenied".into()),
        unavailable: false,
    });
    let plan = case.plan();
    assert_eq!(actions(&plan), vec![(Action::Delete, "o1".into())]);
}

#[test]
fn the_threshold_guard_withholds_mass_deletes_unless_allowed_for_that_account() {
    let mut case = Case::new().steady(20);
    case.desired.truncate(1);
    // 19 of 20 is 95%, more than 0.9.
    let plan = case_clone(&case).plan();
    assert_eq!(plan.summary.delete, 0);
    assert_eq!(plan.withheld.len(), 19);
    assert!(plan.withheld.iter().all(|w| w.reason == Reason::Threshold));
    assert!(
        plan.withheld[0]
            .detail
            .contains("--allow-mass-delete=222222222222"),
        "{}",
        plan.withheld[0].detail
    );

    let mut allowed = case_clone(&case);
    allowed.allow = MassDelete::from_flag(Some(A));
    assert_eq!(allowed.plan().summary.delete, 19);

    let mut other = case_clone(&case);
    other.allow = MassDelete::from_flag(Some(B));
    assert_eq!(other.plan().summary.delete, 0);
}

fn case_clone(case: &Case) -> Case {
    Case {
        desired: case.desired.clone(),
        owned: case.owned.clone(),
        foreign: case.foreign.clone(),
        foreign_references: case.foreign_references.clone(),
        report: case.report.clone(),
        mapping_errors: case.mapping_errors.clone(),
        warnings: case.warnings.clone(),
        producible: case.producible.clone(),
        threshold: case.threshold,
        allow: case.allow.clone(),
        adopt_prefixes: case.adopt_prefixes.clone(),
        adopt_all: case.adopt_all,
        blueprints: case.blueprints.clone(),
    }
}

#[test]
fn deletes_at_the_threshold_go_ahead() {
    let mut case = Case::new().steady(10);
    case.desired.truncate(1);
    // 9 of 10 is 90%, not more than 0.9.
    assert_eq!(case.plan().summary.delete, 9);
}

#[test]
fn the_all_entities_guard_withholds_emptying_an_account() {
    let mut case = Case::new().steady(3);
    case.threshold = 1.0;
    case.desired.clear();
    let plan = case_clone(&case).plan();
    assert!(
        plan.withheld
            .iter()
            .all(|w| w.reason == Reason::AllEntities)
    );
    assert_eq!(plan.withheld.len(), 3);
    case.allow = MassDelete::from_flag(None);
    assert_eq!(case.plan().summary.delete, 3);
}

#[test]
fn entities_of_a_gone_account_are_deletes_under_the_guards() {
    let mut case = Case::new().steady(3);
    case.owned.push(owned(
        "444444444444",
        BUCKET,
        entity("bucket", "x1", json!({})),
    ));
    case.owned.push(owned(
        "444444444444",
        BUCKET,
        entity("bucket", "x2", json!({})),
    ));
    let plan = case_clone(&case).plan();
    assert_eq!(
        withheld(&plan)
            .iter()
            .filter(|w| w.2 == Reason::AllEntities)
            .count(),
        2
    );
    assert!(
        plan.accounts
            .iter()
            .any(|a| a.id == "444444444444" && a.status == AccountStatus::Gone)
    );
    case.allow = MassDelete::from_flag(Some("444444444444"));
    let plan = case.plan();
    assert_eq!(
        actions(&plan),
        vec![(Action::Delete, "x1".into()), (Action::Delete, "x2".into())]
    );
}

#[test]
fn no_account_is_gone_when_discovery_failed() {
    let mut case = Case::new().steady(3);
    case.owned.push(owned(
        "444444444444",
        BUCKET,
        entity("bucket", "x1", json!({})),
    ));
    case.allow = MassDelete::from_flag(None);
    case.report.discovery = Discovery {
        status: DiscoveryStatus::Fallback,
        error: Some("AWSOrganizationsNotInUseException".into()),
    };
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "x1".into(), Reason::DiscoveryFailed)]
    );
    assert!(
        !plan
            .accounts
            .iter()
            .any(|a| a.status == AccountStatus::Gone)
    );
    assert!(plan.is_partial());
}

#[test]
fn a_create_over_a_foreign_entity_is_withheld_unless_adopted() {
    let mut case = Case::new().steady(2);
    case.desired.push(desired(
        A,
        BUCKET,
        entity("bucket", "theirs", json!({"region": "x"})),
    ));
    case.foreign.push(ForeignEntity {
        entity: entity("bucket", "theirs", json!({"region": "y"})),
        owner: "port-ocean/aws-v3/0.1.2/aws/exporter".into(),
    });
    let plan = case_clone(&case).plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Create, "theirs".into(), Reason::ForeignOwner)]
    );
    assert!(plan.changes.is_empty());

    let mut adopt = case_clone(&case);
    adopt.adopt_prefixes = vec!["port-ocean/aws-v3/".into()];
    let plan = adopt.plan();
    assert_eq!(actions(&plan), vec![(Action::Update, "theirs".into())]);
    assert_eq!(
        plan.changes[0].adopted_from.as_deref(),
        Some("port-ocean/aws-v3/0.1.2/aws/exporter")
    );

    case.adopt_all = true;
    assert_eq!(
        actions(&case.plan()),
        vec![(Action::Update, "theirs".into())]
    );
}

#[test]
fn a_change_of_owning_account_is_an_update() {
    let mut case = Case::new().steady(2);
    case.desired[0].origin.account = B.into();
    let plan = case.plan();
    assert_eq!(actions(&plan), vec![(Action::Update, "b0".into())]);
    assert_eq!(plan.changes[0].account.as_deref(), Some(B));
    assert_eq!(plan.changes[0].previous_account.as_deref(), Some(A));
}

#[test]
fn an_entity_desired_by_any_account_is_never_deleted() {
    let mut case = Case::new().steady(2);
    case.desired[0].origin.account = B.into();
    case.report.accounts[0].assumed = false;
    let plan = case.plan();
    assert!(plan.changes.iter().all(|c| c.action != Action::Delete));
}

#[test]
fn duplicates_keep_the_lowest_account_and_warn() {
    let mut case = Case::new();
    let mut high = desired(B, BUCKET, entity("bucket", "same", json!({"from": "B"})));
    high.origin.region = "aa-first".into();
    case.desired.push(high);
    case.desired.push(desired(
        A,
        BUCKET,
        entity("bucket", "same", json!({"from": "A"})),
    ));
    let plan = case.plan();
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].account.as_deref(), Some(A));
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0]
            .message
            .contains("duplicate entity bucket/same")
    );
}

fn relation_blueprints() -> Vec<Blueprint> {
    vec![
        Blueprint(json!({"identifier": "account", "title": "Account", "relations": {}})),
        Blueprint(
            json!({"identifier": "cluster", "title": "Cluster", "relations": {"account": {"target": "account", "many": false, "required": false}}}),
        ),
        Blueprint(
            json!({"identifier": "service", "title": "Service", "relations": {"cluster": {"target": "cluster", "many": false, "required": false}}}),
        ),
    ]
}

fn related(bp: &str, id: &str, rel: &str, target: &str) -> Entity {
    let mut e = entity(bp, id, json!({}));
    e.relations = json!({ rel: target }).as_object().cloned();
    e
}

#[test]
fn creates_follow_relation_order_and_deletes_go_dependents_first() {
    let mut case = Case::new();
    case.blueprints = relation_blueprints();
    case.producible.insert("K".into(), Producible::Any);
    case.allow = MassDelete::from_flag(None);
    case.desired
        .push(desired(A, "K", related("service", "s1", "cluster", "c1")));
    case.desired
        .push(desired(A, "K", related("cluster", "c1", "account", "a1")));
    case.desired
        .push(desired(A, "K", entity("account", "a1", json!({}))));
    case.owned.push(owned(
        A,
        "K",
        related("service", "s-old", "cluster", "c-old"),
    ));
    case.owned.push(owned(
        A,
        "K",
        related("cluster", "c-old", "account", "a-old"),
    ));
    case.owned
        .push(owned(A, "K", entity("account", "a-old", json!({}))));
    let plan = case.plan();
    assert_eq!(
        actions(&plan),
        vec![
            (Action::Create, "a1".into()),
            (Action::Create, "c1".into()),
            (Action::Create, "s1".into()),
            (Action::Delete, "s-old".into()),
            (Action::Delete, "c-old".into()),
            (Action::Delete, "a-old".into()),
        ]
    );
}

#[test]
fn an_entity_a_kept_entity_relates_to_is_kept_with_a_warning() {
    let mut case = Case::new();
    case.blueprints = relation_blueprints();
    case.producible.insert("K".into(), Producible::Any);
    case.threshold = 1.0;
    case.desired.push(desired(
        A,
        "K",
        related("service", "s1", "cluster", "c-old"),
    ));
    case.desired
        .push(desired(A, "K", entity("account", "a0", json!({}))));
    case.owned.push(owned(
        A,
        "K",
        related("cluster", "c-old", "account", "a-old"),
    ));
    case.owned
        .push(owned(A, "K", entity("account", "a-old", json!({}))));
    case.owned
        .push(owned(A, "K", entity("account", "a0", json!({}))));
    let plan = case.plan();
    // c-old is still referenced by s1, and so a-old by c-old: nothing is deleted.
    assert!(
        plan.changes.iter().all(|c| c.action != Action::Delete),
        "{:?}",
        actions(&plan)
    );
    assert!(plan.withheld.is_empty());
    assert_eq!(plan.warnings.len(), 2);
    assert!(!plan.is_partial());
}

#[test]
fn placeholders_are_kept_silently_while_referenced_and_updated_when_mapped() {
    let mut case = Case::new();
    case.blueprints = relation_blueprints();
    case.producible.insert("K".into(), Producible::Any);
    case.desired.push(desired(
        A,
        "K",
        related("cluster", "c1", "account", "a-placeholder"),
    ));
    let mut placeholder = owned(A, "K", Entity::new("account", "a-placeholder"));
    placeholder.placeholder = true;
    placeholder.kind = None;
    case.owned.push(placeholder.clone());
    case.owned.push(owned(
        A,
        "K",
        related("cluster", "c1", "account", "a-placeholder"),
    ));
    let plan = case_clone(&case).plan();
    assert!(
        plan.changes.is_empty() && plan.warnings.is_empty() && plan.withheld.is_empty(),
        "{plan:?}"
    );

    case.desired.push(desired(
        A,
        "K",
        entity("account", "a-placeholder", json!({})),
    ));
    let plan = case.plan();
    assert_eq!(
        actions(&plan),
        vec![(Action::Update, "a-placeholder".into())]
    );
}

/// Found by the property tests: the owned version of a desired entity was walked first and the
/// desired version, sharing its key, was then skipped, so what it newly relates to was deleted.
#[test]
fn an_entity_that_a_desired_entity_newly_relates_to_is_kept() {
    let mut case = Case::new();
    case.blueprints = relation_blueprints();
    case.producible.insert("K".into(), Producible::Any);
    case.threshold = 1.0;
    case.desired.push(desired(
        A,
        "K",
        related("cluster", "c1", "account", "a-old"),
    ));
    case.owned
        .push(owned(A, "K", entity("cluster", "c1", json!({}))));
    case.owned
        .push(owned(A, "K", entity("account", "a-old", json!({}))));
    case.owned
        .push(owned(A, "K", entity("account", "a-gone", json!({}))));
    let plan = case.plan();
    assert_eq!(
        actions(&plan),
        vec![
            (Action::Update, "c1".into()),
            (Action::Delete, "a-gone".into())
        ]
    );
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].message.contains("cluster/c1"));
}

/// Deletes run after the upserts, so a relation the apply replaces keeps nothing: one apply
/// converges instead of two. A merge leaves relations the mapping does not produce in place.
#[test]
fn a_relation_the_apply_replaces_keeps_nothing_but_one_a_merge_leaves_does() {
    let plan_with = |merge: bool| {
        let mut case = Case::new();
        case.blueprints = relation_blueprints();
        case.producible.insert("K".into(), Producible::Any);
        case.threshold = 1.0;
        let mut d = desired(A, "K", entity("cluster", "c1", json!({})));
        d.entity.relations = None;
        d.write.merge = merge;
        case.desired.push(d);
        case.owned
            .push(owned(A, "K", related("cluster", "c1", "account", "a-old")));
        case.owned
            .push(owned(A, "K", entity("account", "a-old", json!({}))));
        case.owned
            .push(owned(A, "K", entity("account", "a-other", json!({}))));
        case.plan()
    };
    let replaced = plan_with(false);
    assert!(
        actions(&replaced).contains(&(Action::Delete, "a-old".into())),
        "{:?}",
        actions(&replaced)
    );
    let merged = plan_with(true);
    assert!(
        !actions(&merged).contains(&(Action::Delete, "a-old".into())),
        "{:?}",
        actions(&merged)
    );
}

/// Sources list concurrently, so listings and warnings arrive in any order; the plan must not
/// change with it (golden files, `plan --detailed-exitcode` in CI, diffs of saved plans).
#[test]
fn the_plan_does_not_depend_on_the_order_of_listings_and_warnings() {
    let plan_with = |reverse: bool| {
        let mut case = Case::new().steady(3);
        case.desired.remove(0);
        let mut listings = vec![
            Listing {
                account: A.into(),
                region: "eu-west-1".into(),
                kind: BUCKET.into(),
                model: None,
                error: Some("AccessDenied: eu".into()),
                unavailable: false,
            },
            Listing {
                account: A.into(),
                region: "us-east-1".into(),
                kind: BUCKET.into(),
                model: None,
                error: Some("AccessDenied: us".into()),
                unavailable: false,
            },
        ];
        let mut owned_order = case.owned.clone();
        if reverse {
            listings.reverse();
            owned_order.reverse();
        }
        case.owned = owned_order;
        case.report.listings = listings;
        let mut input_warnings = vec![
            Issue {
                account: Some(A.into()),
                region: Some("us-east-1".into()),
                kind: Some(BUCKET.into()),
                item: Some("b1".into()),
                message: "title is null".into(),
            },
            Issue {
                account: Some(A.into()),
                region: Some("eu-west-1".into()),
                kind: Some(BUCKET.into()),
                item: Some("b2".into()),
                message: "title is null".into(),
            },
        ];
        if reverse {
            input_warnings.reverse();
        }
        case.warnings = input_warnings;
        case.plan()
    };
    let forward = plan_with(false);
    let backward = plan_with(true);
    assert_eq!(forward, backward);
    assert!(
        forward.withheld[0].detail.contains("eu-west-1"),
        "the first failed region in sorted order is named: {}",
        forward.withheld[0].detail
    );
}

#[test]
fn a_delete_that_a_foreign_entity_relates_to_is_withheld() {
    let mut case = Case::new().steady(5);
    case.desired.remove(0);
    case.foreign_references.push(ForeignReference {
        target: EntityKey::new("bucket", "b0"),
        referrer: EntityKey::new("service", "theirs"),
        owner: "someone-else".into(),
    });
    let plan = case.plan();
    assert_eq!(
        withheld(&plan),
        vec![(Action::Delete, "b0".into(), Reason::ForeignDependents)]
    );
}

#[test]
fn merge_leaves_fields_the_mapping_does_not_define() {
    let mut case = Case::new();
    let mut current = entity("bucket", "b", json!({"region": "x", "owner": "kept"}));
    current.icon = Some(json!("Bucket"));
    case.owned.push(owned(A, BUCKET, current));
    let mut want = Entity::new("bucket", "b");
    want.title = Some(json!("b"));
    want.properties = json!({"region": "x"}).as_object().cloned();
    case.desired.push(desired(A, BUCKET, want.clone()));
    assert!(case_clone(&case).plan().changes.is_empty());

    case.desired[0].write.merge = false;
    let plan = case.plan();
    assert_eq!(actions(&plan), vec![(Action::Update, "b".into())]);
}

#[test]
fn blueprints_are_created_or_extended_additively() {
    let desired_bps = vec![
        Blueprint(
            json!({"identifier": "x", "title": "X", "schema": {"properties": {"a": {"type": "string"}, "b": {"type": "number"}}}, "relations": {"r": {"target": "y", "many": false, "required": false}}}),
        ),
        Blueprint(json!({"identifier": "y", "title": "Y", "schema": {"properties": {}}})),
    ];
    let catalog = vec![Blueprint(
        json!({"identifier": "x", "title": "X", "schema": {"properties": {"a": {"type": "string"}, "c": {"type": "string"}}}}),
    )];
    let plans = blueprint_plan(&desired_bps, &catalog);
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0].identifier, "y");
    assert_eq!(plans[0].action, Action::Create);
    assert_eq!(plans[1].action, Action::Update);
    assert_eq!(
        plans[1].add_properties.keys().collect::<Vec<_>>(),
        vec!["b"]
    );
    assert_eq!(plans[1].add_relations.keys().collect::<Vec<_>>(), vec!["r"]);
}

#[test]
fn the_plan_json_has_the_documented_shape() {
    let mut case = Case::new().steady(3);
    case.desired.remove(0);
    case.desired[0].entity.properties = json!({"region": "eu-west-1"}).as_object().cloned();
    let plan = case.plan();
    let json = serde_json::to_value(&plan).expect("json");
    for key in [
        "format_version",
        "integration",
        "summary",
        "blueprints",
        "changes",
        "withheld",
        "discovery",
        "accounts",
        "scopes",
        "warnings",
        "basis",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["format_version"], "1");
    assert_eq!(
        json["summary"],
        json!({"create": 0, "update": 1, "delete": 1, "unchanged": 1, "withheld": 0})
    );
    assert_eq!(json["discovery"], json!({"status": "ok", "error": null}));
    assert_eq!(
        json["accounts"][0],
        json!({"id": A, "name": "acct-222222222222", "status": "ok", "error": null})
    );
    let change = &json["changes"][0];
    for key in [
        "action",
        "blueprint",
        "identifier",
        "account",
        "kind",
        "before",
        "after",
    ] {
        assert!(change.get(key).is_some(), "change is missing {key}");
    }
    assert_eq!(json["changes"][1]["after"], Json::Null);
    assert!(json["basis"]["accounts"][A].is_string());
    let back: Plan = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, plan);
}

#[test]
fn owned_hashes_change_when_an_entity_changes() {
    let case = Case::new().steady(2);
    let before = owned_hashes(&case.owned);
    let mut changed = case.owned.clone();
    changed[0].entity.title = Some(json!("renamed"));
    assert_ne!(before, owned_hashes(&changed));
    assert_eq!(before, owned_hashes(&case.owned));
}

#[test]
fn writes_follow_the_change_order() {
    let mut case = Case::new().steady(3);
    case.desired.remove(0);
    case.desired
        .push(desired(A, BUCKET, entity("bucket", "n", json!({}))));
    let plan = case.plan();
    let writes = plan.writes();
    assert_eq!(writes.upserts.len(), 1);
    assert_eq!(writes.upserts[0].entity.identifier, "n");
    assert_eq!(writes.upserts[0].account, A);
    assert_eq!(writes.deletes.len(), 1);
}
