//! The Port catalog adapter against the Port stand-in: real HTTP, real client.

mod support;

use std::time::Duration;

use serde_json::{Value as Json, json};

use support::catalogs::{self, Counting, OWNER, delete, port_options};
use support::port_standin::{Faults, Hostile, PortStandIn};
use tidemark::adapters::Catalog;
use tidemark::adapters::port::{PortCatalog, PortOptions, RetryPolicy};
use tidemark::core::model::{Blueprint, Entity, EntityKey};
use tidemark::core::secret::Secret;
use tidemark::core::writes::{BlueprintChange, Delete, NoProgress, Upsert, Writes};

const BUCKET: &str = "awsS3Bucket";
const ACCOUNT: &str = "awsAccount";

fn catalog(standin: &PortStandIn) -> PortCatalog {
    PortCatalog::with_options(standin.config(), OWNER, port_options()).expect("catalog")
}

fn bucket_blueprint() -> Json {
    json!({"identifier": BUCKET, "title": "S3 bucket",
           "schema": {"properties": {"region": {"type": "string"}, "size": {"type": "number"},
                                     "note": {"type": "string"}}},
           "relations": {"account": {"target": ACCOUNT, "many": false, "required": false}}})
}

fn account_blueprint() -> Json {
    json!({"identifier": ACCOUNT, "title": "AWS account",
           "schema": {"properties": {"name": {"type": "string"}}}, "relations": {}})
}

async fn standin_with_blueprints() -> PortStandIn {
    let standin = PortStandIn::start().await;
    standin.add_blueprint(account_blueprint());
    standin.add_blueprint(bucket_blueprint());
    standin
}

fn entity(blueprint: &str, id: &str, props: Json, rels: Json) -> Entity {
    let mut e = Entity::new(blueprint, id);
    e.title = Some(json!(id));
    e.properties = props.as_object().cloned();
    e.relations = rels.as_object().cloned();
    e
}

fn upsert(entity: Entity, account: &str) -> Upsert {
    catalogs::upsert(entity, account, true, true)
}

fn bucket(id: &str, account: &str) -> Upsert {
    upsert(
        entity(
            BUCKET,
            id,
            json!({"region": "us-east-1"}),
            json!({"account": account}),
        ),
        account,
    )
}

fn account_entity(id: &str) -> Upsert {
    upsert(entity(ACCOUNT, id, json!({"name": id}), json!({})), id)
}

fn ours(catalog: &PortCatalog, account: &str) -> String {
    catalog.user_agent(account)
}

#[tokio::test]
async fn a_first_apply_writes_in_as_few_bulk_requests_as_the_limits_allow() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let mut upserts = vec![
        account_entity("111111111111"),
        account_entity("222222222222"),
    ];
    upserts.extend((0..45).map(|i| bucket(&format!("arn:aws:s3:::a-{i}"), "111111111111")));
    upserts.extend((0..5).map(|i| bucket(&format!("arn:aws:s3:::b-{i}"), "222222222222")));
    let writes = Writes {
        upserts,
        ..Writes::default()
    };

    let report = catalog.apply(OWNER, &writes, &NoProgress).await;

    assert_eq!(report.stopped, None);
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted.len(), 52);
    // Accounts: one request per account; buckets: ceil(45/20) + ceil(5/20).
    assert_eq!(report.write_requests, 2 + 3 + 1);
    assert_eq!(standin.counters().writes, 6);
    let stored = standin
        .entity(BUCKET, "arn:aws:s3:::b-3")
        .expect("bucket stored");
    assert_eq!(stored.datasource, ours(&catalog, "222222222222"));
    assert!(standin.log().iter().all(|l| l.path.starts_with("/v1/")));
}

#[tokio::test]
async fn owned_entities_are_attributed_per_account_whatever_tidemark_version_wrote_them() {
    let standin = standin_with_blueprints().await;
    let b =
        |id: &str| json!({"identifier": id, "title": id, "properties": {"region": "eu-west-1"}});
    standin.seed_entity(
        BUCKET,
        b("current"),
        &format!(
            "tidemark/{}/aws-prod/111111111111",
            env!("CARGO_PKG_VERSION")
        ),
    );
    standin.seed_entity(BUCKET, b("older"), "tidemark/0.0.1/aws-prod/111111111111");
    standin.seed_entity(
        BUCKET,
        b("gone-account"),
        "tidemark/0.0.1/aws-prod/333333333333",
    );
    standin.seed_entity(
        BUCKET,
        b("ocean-same-name"),
        "port-ocean/aws-v3/1.0.0/aws-prod/exporter",
    );
    standin.seed_entity(
        BUCKET,
        b("other-integration"),
        "tidemark/0.1.0/aws-staging/111111111111",
    );
    standin.seed_entity(
        ACCOUNT,
        json!({"identifier": "111111111111"}),
        "tidemark/0.1.0/aws-prod/111111111111",
    );
    let catalog = catalog(&standin);

    let owned = catalog
        .owned(OWNER, &["111111111111".to_string()])
        .await
        .expect("owned");

    let found: Vec<(String, Option<String>, bool)> = owned
        .iter()
        .map(|o| {
            (
                o.entity.identifier.clone(),
                o.account.clone(),
                o.placeholder,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "111111111111".to_string(),
                Some("111111111111".to_string()),
                true
            ),
            (
                "current".to_string(),
                Some("111111111111".to_string()),
                false
            ),
            ("gone-account".to_string(), None, false),
            ("older".to_string(), Some("111111111111".to_string()), false),
        ]
    );
    let current = owned
        .iter()
        .find(|o| o.entity.identifier == "current")
        .expect("current");
    assert_eq!(
        current.entity.properties,
        json!({"region": "eu-west-1"}).as_object().cloned()
    );
    assert_eq!(
        current.entity.relations, None,
        "meta fields are not entity fields"
    );
    // One blueprint list, one ownership listing per account, one search per blueprint.
    assert_eq!(catalog.requests().reads, 1 + 1 + 2);
}

#[tokio::test]
async fn owned_reads_every_page_of_large_blueprints() {
    let standin = standin_with_blueprints().await;
    let agent = format!(
        "tidemark/{}/aws-prod/111111111111",
        env!("CARGO_PKG_VERSION")
    );
    for i in 0..2500 {
        standin.seed_entity(BUCKET, json!({"identifier": format!("b{i:05}")}), &agent);
    }
    let catalog = catalog(&standin);
    let owned = catalog
        .owned(OWNER, &["111111111111".to_string()])
        .await
        .expect("owned");
    assert_eq!(owned.len(), 2500);
    assert!(
        owned
            .iter()
            .all(|o| o.account.as_deref() == Some("111111111111"))
    );
    // Blueprints, one listing page (5000 per page), searches: 3 pages for buckets, 1 for accounts.
    assert_eq!(catalog.requests().reads, 1 + 1 + 3 + 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    catalog.blueprints().await.expect("first call");
    standin.expire_tokens();
    let blueprints = catalog.blueprints().await.expect("after expiry");
    assert_eq!(blueprints.len(), 2);
    assert_eq!(standin.counters().auth, 2);
    let statuses: Vec<u16> = standin.log().iter().map(|l| l.status).collect();
    // Token, call, call refused, new token, the same call again.
    assert_eq!(statuses, vec![200, 200, 401, 200, 200]);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_without_a_401() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| f.token_lifetime_secs = 1);
    let catalog = catalog(&standin);
    catalog.blueprints().await.expect("first call");
    tokio::time::sleep(Duration::from_millis(900)).await;
    catalog.blueprints().await.expect("second call");
    assert_eq!(standin.counters().auth, 2);
    assert!(standin.log().iter().all(|l| l.status == 200));
}

#[tokio::test]
async fn wrong_credentials_fail_with_a_message_that_never_shows_the_secret() {
    let standin = standin_with_blueprints().await;
    let mut config = standin.config();
    config.client_secret = Secret::new("wrong-secret-value");
    let catalog = PortCatalog::with_options(config, OWNER, port_options()).expect("catalog");
    let err = catalog.blueprints().await.expect_err("refused").to_string();
    assert!(err.contains("401"), "{err}");
    assert!(
        !err.contains("wrong-secret-value") && !err.contains("standin-token"),
        "{err}"
    );
    assert!(!format!("{catalog:?}").contains("wrong-secret-value"));
}

#[tokio::test]
async fn port_answers_that_repeat_the_request_never_bring_the_credentials_or_token_into_errors() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| f.echo_in_errors = true);
    let mut config = standin.config();
    let client_id = config.client_id.expose().to_string();
    config.client_secret = Secret::new("wrong-secret-value");
    let refused = PortCatalog::with_options(config, OWNER, port_options()).expect("catalog");
    let err = refused.blueprints().await.expect_err("refused").to_string();
    assert!(
        err.contains("request: Authorization"),
        "the stand-in did not echo: {err}"
    );
    assert!(
        !err.contains("wrong-secret-value") && !err.contains(&client_id),
        "{err}"
    );

    // With good credentials, an error answer echoes the bearer token.
    let catalog = catalog(&standin);
    let mut stray = bucket("b1", "111");
    stray.entity.blueprint = "no-such-blueprint".into();
    let report = catalogs::upserts(&catalog, vec![stray]).await;
    let shown = format!("{:?} {:?}", report.rejected, report.stopped);
    assert!(
        shown.contains("request: Authorization"),
        "the stand-in did not echo: {shown}"
    );
    assert!(!shown.contains("standin-token"), "{shown}");
}

#[tokio::test]
async fn a_partial_bulk_answer_reports_each_refused_entity_with_ports_message() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let mut upserts: Vec<Upsert> = (0..25).map(|i| bucket(&format!("b{i}"), "111")).collect();
    upserts[7].entity.properties = json!({"size": "large"}).as_object().cloned();
    upserts.insert(0, account_entity("111"));
    let report = catalogs::upserts(&catalog, upserts).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted.len(), 25);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].key, EntityKey::new(BUCKET, "b7"));
    let message = &report.rejected[0].message;
    assert!(
        message.contains("properties.size") && message.contains("number"),
        "Port's message names the property and the rule: {:?}",
        report.rejected
    );
    assert!(standin.entity(BUCKET, "b7").is_none());
    assert!(standin.log().iter().any(|l| l.status == 207));
}

#[tokio::test]
async fn merge_keeps_fields_the_mapping_does_not_define_and_replace_drops_them() {
    let standin = standin_with_blueprints().await;
    let agent = "tidemark/0.1.0/aws-prod/111";
    let seeded = json!({"identifier": "b", "title": "old", "properties": {"region": "us-east-1", "note": "keep me"}});
    standin.seed_entity(BUCKET, seeded.clone(), agent);
    standin.seed_entity(BUCKET, json!({"identifier": "c", "title": "old", "properties": {"region": "us-east-1", "note": "drop me"}}), agent);
    let catalog = catalog(&standin);
    let mut merged = upsert(
        entity(BUCKET, "b", json!({"region": "eu-west-1"}), json!({})),
        "111",
    );
    merged.entity.relations = None;
    let mut replaced = upsert(
        entity(BUCKET, "c", json!({"region": "eu-west-1"}), json!({})),
        "111",
    );
    replaced.entity.relations = None;
    replaced.write.merge = false;
    let report = catalogs::upserts(&catalog, vec![merged, replaced]).await;
    assert_eq!(report.upserted.len(), 2, "{report:?}");
    let b = standin.entity(BUCKET, "b").expect("b");
    assert_eq!(
        b.body["properties"],
        json!({"region": "eu-west-1", "note": "keep me"})
    );
    let c = standin.entity(BUCKET, "c").expect("c");
    assert_eq!(c.body["properties"], json!({"region": "eu-west-1"}));
    let queries: Vec<String> = standin
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/bulk"))
        .map(|l| l.query.clone())
        .collect();
    assert!(
        queries
            .contains(&"upsert=true&merge=true&create_missing_related_entities=true".to_string()),
        "{queries:?}"
    );
    assert!(
        queries
            .contains(&"upsert=true&merge=false&create_missing_related_entities=true".to_string()),
        "{queries:?}"
    );
}

#[tokio::test]
async fn entities_whose_relation_targets_do_not_exist_yet_are_retried_after_them() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let strict = |mut u: Upsert| {
        u.write.create_missing_related = false;
        u
    };
    // Deliberately out of relation order: the buckets come before their account.
    let upserts = vec![
        strict(bucket("b1", "111")),
        strict(bucket("b2", "111")),
        strict(bucket("orphan", "999")),
        strict(account_entity("111")),
    ];
    let report = catalogs::upserts(&catalog, upserts).await;
    assert_eq!(report.stopped, None);
    let mut upserted: Vec<String> = report
        .upserted
        .iter()
        .map(|k| k.identifier.clone())
        .collect();
    upserted.sort();
    assert_eq!(upserted, vec!["111", "b1", "b2"]);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].key.identifier, "orphan");
    assert!(
        report.rejected[0].message.contains("not_found"),
        "{:?}",
        report.rejected
    );
    assert!(standin.entity(ACCOUNT, "999").is_none());
}

#[tokio::test]
async fn missing_relation_targets_are_created_empty_and_owned_by_the_referring_account() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let report = catalogs::upserts(&catalog, vec![bucket("b1", "444")]).await;
    assert_eq!(report.upserted.len(), 1);
    let owned = catalog
        .owned(OWNER, &["444".to_string()])
        .await
        .expect("owned");
    let placeholder = owned
        .iter()
        .find(|o| o.entity.blueprint == ACCOUNT)
        .expect("target created");
    assert_eq!(placeholder.entity.identifier, "444");
    assert_eq!(placeholder.account.as_deref(), Some("444"));
    assert!(placeholder.placeholder);
}

#[tokio::test]
async fn foreign_entities_report_their_owner_or_the_adoption_prefix_that_matches() {
    let standin = standin_with_blueprints().await;
    let b = |id: &str| json!({"identifier": id, "title": id});
    standin.seed_entity(BUCKET, b("ocean"), "port-ocean/aws-v3/1.2.3/aws/exporter");
    standin.seed_entity(BUCKET, b("manual"), "Mozilla/5.0 (X11)");
    standin.seed_entity(BUCKET, b("mine"), "tidemark/0.1.0/aws-prod/111");
    let mut opts = port_options();
    opts.adopt_prefixes = vec!["port-ocean/aws-v3/".into()];
    let catalog = PortCatalog::with_options(standin.config(), OWNER, opts).expect("catalog");
    let keys: Vec<EntityKey> = ["ocean", "manual", "mine", "absent"]
        .iter()
        .map(|id| EntityKey::new(BUCKET, *id))
        .chain([EntityKey::new("noSuchBlueprint", "x")])
        .collect();

    let foreign = catalog.foreign(OWNER, &keys).await.expect("foreign");
    let owners: Vec<(String, String)> = foreign
        .iter()
        .map(|f| (f.entity.identifier.clone(), f.owner.clone()))
        .collect();
    assert_eq!(
        owners,
        vec![
            ("manual".to_string(), String::new()),
            ("ocean".to_string(), "port-ocean/aws-v3/".to_string())
        ]
    );

    standin.faults(|f| f.expose_datasource = true);
    let foreign = catalog.foreign(OWNER, &keys).await.expect("foreign");
    let owners: Vec<String> = foreign.iter().map(|f| f.owner.clone()).collect();
    assert_eq!(
        owners,
        vec!["Mozilla/5.0 (X11)", "port-ocean/aws-v3/1.2.3/aws/exporter"]
    );
}

#[tokio::test]
async fn foreign_references_find_other_writers_entities_that_relate_to_ours() {
    let standin = standin_with_blueprints().await;
    standin.seed_entity(
        ACCOUNT,
        json!({"identifier": "111"}),
        "tidemark/0.1.0/aws-prod/111",
    );
    standin.seed_entity(
        ACCOUNT,
        json!({"identifier": "222"}),
        "tidemark/0.1.0/aws-prod/222",
    );
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "theirs", "relations": {"account": "111"}}),
        "port-ocean/aws-v3/1/aws/exporter",
    );
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "mine", "relations": {"account": "222"}}),
        "tidemark/0.1.0/aws-prod/222",
    );
    let catalog = catalog(&standin);
    let refs = catalog
        .foreign_references(
            OWNER,
            &[
                EntityKey::new(ACCOUNT, "111"),
                EntityKey::new(ACCOUNT, "222"),
            ],
        )
        .await
        .expect("references");
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].target, EntityKey::new(ACCOUNT, "111"));
    assert_eq!(refs[0].referrer, EntityKey::new(BUCKET, "theirs"));
}

#[tokio::test]
async fn deletes_go_out_in_bulk_never_cascade_and_a_foreign_dependent_blocks_only_its_target() {
    let standin = standin_with_blueprints().await;
    let agent = "tidemark/0.1.0/aws-prod/111";
    for i in 0..150 {
        standin.seed_entity(
            BUCKET,
            json!({"identifier": format!("arn:aws:s3:::old/{i}+x")}),
            agent,
        );
    }
    standin.seed_entity(ACCOUNT, json!({"identifier": "111"}), agent);
    standin.seed_entity(ACCOUNT, json!({"identifier": "222"}), agent);
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "theirs", "relations": {"account": "111"}}),
        "someone-else",
    );
    let catalog = catalog(&standin);
    let mut deletes: Vec<Delete> = (0..150)
        .map(|i| delete(BUCKET, &format!("arn:aws:s3:::old/{i}+x"), Some("111")))
        .collect();
    deletes.push(delete(ACCOUNT, "111", Some("111")));
    deletes.push(delete(ACCOUNT, "222", None));
    deletes.push(delete(ACCOUNT, "already-gone", None));

    let report = catalogs::deletes(&catalog, deletes).await;

    assert_eq!(report.stopped, None);
    assert_eq!(report.deleted.len(), 152, "{:?}", report.rejected);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].key, EntityKey::new(ACCOUNT, "111"));
    assert!(
        report.rejected[0].message.contains("has_dependents"),
        "{:?}",
        report.rejected
    );
    let left: Vec<String> = standin
        .entities()
        .into_iter()
        .map(|e| e.identifier)
        .collect();
    assert_eq!(left, vec!["111", "theirs"]);
    let log = standin.log();
    assert!(
        log.iter()
            .filter(|l| l.path.contains("/bulk/entities/delete"))
            .all(|l| l.query == "delete_dependents=false")
    );
    assert!(
        log.iter()
            .filter(|l| l.method == "DELETE")
            .all(|l| l.query == "delete_dependents=false")
    );
    // Buckets: two bulk requests (100 + 50); accounts: two (per account), then one by one.
    assert_eq!(
        log.iter()
            .filter(|l| l.path.contains("/bulk/entities/delete"))
            .count(),
        4
    );
}

#[tokio::test]
async fn identifiers_with_slashes_and_colons_are_one_path_segment() {
    let standin = standin_with_blueprints().await;
    let id = "arn:aws:s3:::bucket/key+a=b@c";
    standin.seed_entity(
        BUCKET,
        json!({"identifier": id}),
        "tidemark/0.1.0/aws-prod/111",
    );
    let catalog = catalog(&standin);
    let report = catalogs::deletes(&catalog, vec![delete(BUCKET, id, Some("111"))]).await;
    assert_eq!(report.deleted, vec![EntityKey::new(BUCKET, id)]);
    assert!(standin.entity(BUCKET, id).is_none());
    // An identifier the bulk answer does not confirm (already gone) goes the single-entity route.
    let single =
        catalogs::deletes(&catalog, vec![delete(BUCKET, "arn:aws:s3:::gone/x", None)]).await;
    assert_eq!(
        single.deleted,
        vec![EntityKey::new(BUCKET, "arn:aws:s3:::gone/x")]
    );
    assert!(standin.log().iter().any(|l| l.method == "DELETE"
        && l.path == "/v1/blueprints/awsS3Bucket/entities/arn%3Aaws%3As3%3A%3A%3Agone%2Fx"));
}

fn bootstrap_writes() -> Writes {
    let a = json!({"identifier": "cycA", "title": "A", "schema": {"properties": {"p": {"type": "string"}}},
                   "relations": {"toB": {"target": "cycB", "many": false, "required": false}}});
    let b = json!({"identifier": "cycB", "title": "B", "schema": {"properties": {}},
                   "relations": {"toA": {"target": "cycA", "many": true, "required": false}}});
    Writes {
        blueprints: vec![
            BlueprintChange::Create {
                identifier: "cycA".into(),
                definition: Blueprint(a),
            },
            BlueprintChange::Create {
                identifier: "cycB".into(),
                definition: Blueprint(b),
            },
            BlueprintChange::Update {
                identifier: BUCKET.into(),
                add_properties: json!({"added": {"type": "boolean"}, "region": {"type": "number"}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                add_relations: json!({"peer": {"target": BUCKET, "many": true, "required": false}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
        ],
        ..Writes::default()
    }
}

#[tokio::test]
async fn blueprint_bootstrap_adds_relations_after_creating_so_cycles_work_and_only_adds() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let report = catalog.apply(OWNER, &bootstrap_writes(), &NoProgress).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.blueprints_written, vec!["cycA", "cycB", BUCKET]);
    let a = standin.blueprint("cycA").expect("cycA");
    assert_eq!(a["relations"]["toB"]["target"], "cycB");
    assert_eq!(
        standin.blueprint("cycB").expect("cycB")["relations"]["toA"]["target"],
        "cycA"
    );
    let bucket = standin.blueprint(BUCKET).expect("bucket");
    assert_eq!(
        bucket["schema"]["properties"]["added"],
        json!({"type": "boolean"})
    );
    assert_eq!(
        bucket["schema"]["properties"]["region"],
        json!({"type": "string"}),
        "never altered"
    );
    assert_eq!(
        bucket["relations"]["account"]["target"], ACCOUNT,
        "never removed"
    );
    assert_eq!(bucket["relations"]["peer"]["target"], BUCKET);

    // An interrupted or repeated bootstrap completes without changing anything twice.
    let writes_before = standin.counters().writes;
    let again = catalog.apply(OWNER, &bootstrap_writes(), &NoProgress).await;
    assert_eq!(again.stopped, None);
    // Both blueprints are read first and found, and nothing is missing: no write at all.
    assert_eq!(standin.counters().writes - writes_before, 0);
    standin.assert_every_request_was_well_formed();
}

/// Blueprints, creates, updates and deletes: the same scenario with and without faults.
async fn scenario(standin: &PortStandIn) -> tidemark::core::writes::ApplyReport {
    standin.add_blueprint(account_blueprint());
    let agent = "tidemark/0.1.0/aws-prod/111";
    for i in 0..30 {
        standin.seed_entity(BUCKET, json!({"identifier": format!("stale-{i}")}), agent);
    }
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "foreign", "title": "keep"}),
        "someone-else",
    );
    let mut writes = Writes {
        blueprints: vec![BlueprintChange::Create {
            identifier: BUCKET.into(),
            definition: Blueprint(bucket_blueprint()),
        }],
        ..Writes::default()
    };
    writes.upserts.push(account_entity("111"));
    writes
        .upserts
        .extend((0..70).map(|i| bucket(&format!("b{i}"), "111")));
    writes
        .deletes
        .extend((0..30).map(|i| delete(BUCKET, &format!("stale-{i}"), Some("111"))));
    let catalog = catalog(standin);
    catalog.apply(OWNER, &writes, &NoProgress).await
}

#[tokio::test]
async fn faults_on_every_third_write_and_a_429_burst_end_in_the_same_state_as_a_clean_run() {
    let clean = PortStandIn::start().await;
    let clean_report = scenario(&clean).await;
    assert_eq!(clean_report.stopped, None);

    let faulty = PortStandIn::start().await;
    faulty.faults(|f| {
        f.fail_every_nth_write = Some(3);
        f.burst_429 = 3;
        f.retry_after = "0".into();
    });
    let faulty_report = scenario(&faulty).await;
    assert_eq!(faulty_report.stopped, None);
    assert_eq!(faulty_report.rejected, vec![]);

    assert_eq!(faulty.state(), clean.state());
    assert_eq!(faulty_report.upserted.len(), clean_report.upserted.len());
    assert_eq!(faulty_report.deleted.len(), 30);
    assert!(faulty.log().iter().any(|l| l.status == 503));
    assert!(faulty.log().iter().any(|l| l.status == 429));
    let foreign = faulty
        .entity(BUCKET, "foreign")
        .expect("foreign entity survives");
    assert_eq!(
        (foreign.datasource.as_str(), foreign.writes),
        ("someone-else", 0)
    );
}

#[tokio::test]
async fn a_connection_dropped_after_a_committed_write_does_not_duplicate_it() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| f.drop_after_commit = 1);
    let catalog = catalog(&standin);
    let upserts = vec![
        account_entity("111"),
        bucket("b1", "111"),
        bucket("b2", "111"),
    ];
    let report = catalogs::upserts(&catalog, upserts).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted.len(), 3);
    assert_eq!(standin.entities().len(), 3);
    let account = standin.entity(ACCOUNT, "111").expect("account");
    assert_eq!(
        account.writes, 2,
        "committed, lost, retried: the same entity written twice"
    );
    assert_eq!(report.write_requests, 3);
}

#[tokio::test]
async fn bulk_answers_that_do_not_match_the_request_stop_the_apply_before_any_delete() {
    let standin = standin_with_blueprints().await;
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "stale"}),
        "tidemark/0.1.0/aws-prod/111",
    );
    standin.faults(|f| f.hostile_bulk = Some(Hostile::BadIndexes));
    let catalog = catalog(&standin);
    let writes = Writes {
        upserts: vec![account_entity("111"), bucket("b1", "111")],
        deletes: vec![delete(BUCKET, "stale", Some("111"))],
        ..Writes::default()
    };
    let report = catalog.apply(OWNER, &writes, &NoProgress).await;
    let stopped = report.stopped.expect("stopped").to_string();
    assert!(stopped.contains("index"), "{stopped}");
    assert_eq!(report.deleted, vec![]);
    assert!(standin.entity(BUCKET, "stale").is_some());
}

#[tokio::test]
async fn html_truncated_not_ok_and_foreign_blueprint_search_answers_are_clear_errors() {
    let standin = standin_with_blueprints().await;
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "b"}),
        "tidemark/0.1.0/aws-prod/111",
    );
    let catalog = catalog(&standin);
    for (hostile, expected) in [
        (Hostile::Html, "not valid JSON"),
        (Hostile::Truncated, "not valid JSON"),
        (Hostile::NotOk, "ok is false"),
        (Hostile::OtherBlueprint, "someOtherBlueprint"),
    ] {
        standin.faults(|f| f.hostile_search = Some(hostile));
        let err = catalog
            .owned(OWNER, &["111".to_string()])
            .await
            .expect_err("hostile answer")
            .to_string();
        assert!(err.contains(expected), "{hostile:?}: {err}");
    }
}

#[tokio::test]
async fn html_truncated_and_not_ok_answers_to_a_write_stop_the_apply_before_any_delete() {
    for hostile in [Hostile::Html, Hostile::Truncated, Hostile::NotOk] {
        let standin = standin_with_blueprints().await;
        let catalog = catalog(&standin);
        let first = catalogs::upserts(&catalog, vec![account_entity("111")]).await;
        assert_eq!(first.upserted.len(), 1);
        standin.faults(|f| f.hostile_bulk = Some(hostile));
        let report = catalog
            .apply(
                OWNER,
                &Writes {
                    upserts: vec![bucket("b1", "111")],
                    deletes: vec![delete(ACCOUNT, "111", Some("111"))],
                    ..Writes::default()
                },
                &NoProgress,
            )
            .await;
        let expected = match hostile {
            Hostile::NotOk => "ok is false",
            _ => "not valid JSON",
        };
        assert!(
            report
                .stopped
                .as_ref()
                .map(ToString::to_string)
                .is_some_and(|s| s.contains(expected) && s.contains("/entities/bulk")),
            "{hostile:?}: {report:?}"
        );
        assert_eq!(report.upserted, vec![], "{hostile:?}");
        assert_eq!(report.deleted, vec![], "{hostile:?}");
        assert!(standin.entity(ACCOUNT, "111").is_some(), "{hostile:?}");
    }
}

#[tokio::test]
async fn a_bulk_delete_answer_that_cannot_be_trusted_stops_the_apply_with_nothing_reported_deleted()
{
    for (hostile, expected) in [
        (Hostile::Html, "not valid JSON"),
        (Hostile::Truncated, "not valid JSON"),
        (Hostile::NotOk, "ok is false"),
        (Hostile::BadIndexes, "never-sent"),
    ] {
        let standin = standin_with_blueprints().await;
        for id in ["s1", "s2"] {
            standin.seed_entity(
                BUCKET,
                json!({"identifier": id}),
                "tidemark/0.1.0/aws-prod/111",
            );
        }
        standin.faults(|f| f.hostile_delete = Some(hostile));
        let report = catalog(&standin)
            .apply(
                OWNER,
                &Writes {
                    deletes: vec![
                        delete(BUCKET, "s1", Some("111")),
                        delete(BUCKET, "s2", Some("111")),
                    ],
                    ..Writes::default()
                },
                &NoProgress,
            )
            .await;
        let stopped = report
            .stopped
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(stopped.contains(expected), "{hostile:?}: {report:?}");
        // Nothing is reported deleted on an answer that cannot be read, and no fallback to
        // single deletes guesses at what Port did.
        assert_eq!(report.deleted, vec![], "{hostile:?}");
        assert!(
            standin.log().iter().all(|l| l.method != "DELETE"),
            "{hostile:?}"
        );
        if hostile != Hostile::BadIndexes {
            assert_eq!(standin.entities().len(), 2, "{hostile:?}");
        }
    }
}

#[tokio::test]
async fn hostile_ownership_listings_are_clear_errors() {
    let standin = standin_with_blueprints().await;
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "b"}),
        "tidemark/0.1.0/aws-prod/111",
    );
    let catalog = catalog(&standin);
    for (hostile, expected) in [
        (Hostile::Html, "not valid JSON"),
        (Hostile::Truncated, "not valid JSON"),
        (Hostile::NotOk, "ok is false"),
        (Hostile::CursorLoop, "a second time"),
    ] {
        standin.faults(|f| f.hostile_listing = Some(hostile));
        let err = catalog
            .owned(OWNER, &["111".to_string()])
            .await
            .expect_err("hostile answer")
            .to_string();
        let names_the_listing =
            err.contains("datasource-entities") || err.contains("ownership listing");
        assert!(
            err.contains(expected) && names_the_listing,
            "{hostile:?}: {err}"
        );
    }
}

#[tokio::test]
async fn page_cursors_that_come_round_again_end_the_read_with_an_error() {
    let standin = standin_with_blueprints().await;
    standin.seed_entity(
        BUCKET,
        json!({"identifier": "b"}),
        "tidemark/0.1.0/aws-prod/111",
    );
    standin.faults(|f| f.hostile_search = Some(Hostile::CursorLoop));
    let catalog = catalog(&standin);
    // A bound on the endless read this test guards against, not a timing assertion.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        catalog.owned(OWNER, &["111".to_string()]),
    )
    .await
    .expect("the read follows the cursors round forever")
    .expect_err("a cursor loop")
    .to_string();
    assert!(
        err.contains("search of blueprint") && err.contains("a second time"),
        "{err}"
    );
    // a → b → a: three pages of one blueprint, not an endless read.
    let searches = standin
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/entities/search"))
        .count();
    assert!(searches <= 2 * 3, "{searches} searches");
}

#[tokio::test]
async fn requests_are_paced_from_the_rate_limit_headers_instead_of_running_into_429s() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| {
        f.rate_limit = 4;
        f.rate_window = Duration::from_secs(1);
    });
    let catalog = catalog(&standin);
    for _ in 0..10 {
        catalog.blueprints().await.expect("blueprints");
    }
    let statuses: Vec<u16> = standin.log().iter().map(|l| l.status).collect();
    assert_eq!(
        statuses.len(),
        11,
        "one token and ten reads, no retries: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_retried() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| {
        f.burst_429 = 2;
        f.retry_after = "1".into();
    });
    let catalog = catalog(&standin);
    let blueprints = catalog.blueprints().await.expect("after the burst");
    assert_eq!(blueprints.len(), 2);
    let statuses: Vec<u16> = standin.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![429, 429, 200, 200]);
}

#[tokio::test]
async fn absurd_token_lifetimes_and_wait_headers_neither_panic_nor_stall_the_client() {
    // Each of these once panicked the process: a lifetime or a wait too large for a Duration or
    // an Instant, or a remaining count so small that dividing the window by it overflowed.
    let quick = PortOptions {
        retry: RetryPolicy {
            max_delay: Duration::from_millis(50),
            ..port_options().retry
        },
        ..port_options()
    };
    let faults = |change: &dyn Fn(&mut Faults)| {
        let mut faults = Faults::default();
        change(&mut faults);
        faults
    };
    let headers = |pairs: &[(&'static str, &str)]| {
        faults(&|f| f.headers = pairs.iter().map(|(n, v)| (*n, v.to_string())).collect())
    };
    let cases = [
        (
            "expiresIn 1e300",
            faults(&|f| f.token_expires_in = Some(json!(1e300))),
        ),
        (
            "expiresIn 1.5e19",
            faults(&|f| f.token_expires_in = Some(json!(1.5e19))),
        ),
        (
            "a reset too far away for a Duration",
            headers(&[("x-ratelimit-reset", "99999999999999999999")]),
        ),
        (
            "a reset of 1e300 seconds",
            headers(&[
                ("x-ratelimit-reset", "1e300"),
                ("x-ratelimit-remaining", "0"),
            ]),
        ),
        (
            "almost nothing remaining",
            headers(&[
                ("x-ratelimit-reset", "100"),
                ("x-ratelimit-limit", "1000"),
                ("x-ratelimit-remaining", "1e-300"),
            ]),
        ),
        (
            "a 429 with Retry-After 1e300",
            faults(&|f| {
                f.burst_429 = 1;
                f.retry_after = "1e300".into();
            }),
        ),
    ];
    let mut broken = Vec::new();
    for (case, fault) in cases {
        let standin = standin_with_blueprints().await;
        standin.faults(|f| *f = fault);
        let catalog =
            PortCatalog::with_options(standin.config(), OWNER, quick.clone()).expect("catalog");
        // In a task of its own, so a panic is reported as this case's failure.
        let calls = tokio::spawn(async move {
            for _ in 0..2 {
                let blueprints = catalog.blueprints().await.map_err(|e| e.to_string())?;
                if blueprints.len() != 2 {
                    return Err(format!("{} blueprints", blueprints.len()));
                }
            }
            Ok::<_, String>(())
        });
        match tokio::time::timeout(Duration::from_secs(10), calls).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => broken.push(format!("{case}: {e}")),
            Ok(Err(e)) => broken.push(format!("{case}: {e}")),
            Err(_) => broken.push(format!("{case}: stalled")),
        }
        drop(standin);
    }
    assert_eq!(broken, Vec::<String>::new());
}

#[tokio::test]
async fn a_503_burst_longer_than_the_retries_stops_with_a_clear_error() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    catalog.blueprints().await.expect("token");
    standin.faults(|f| f.burst_503 = 100);
    let err = catalog.blueprints().await.expect_err("gave up").to_string();
    assert!(err.contains("503") && err.contains("9 attempts"), "{err}");
}

#[tokio::test]
async fn a_503_is_retried_soon_with_the_default_policy_not_when_the_rate_window_resets() {
    // The stand-in, like Port, sends `x-ratelimit-reset` (here about 300 s) on every answer,
    // the 503s included. The tests above shorten `max_delay` to 2 s, which hid that the client
    // took it for the retry wait; with the defaults the binary uses, each 503 cost two minutes.
    let standin = standin_with_blueprints().await;
    let catalog = PortCatalog::with_options(
        standin.config(),
        OWNER,
        PortOptions {
            retry: RetryPolicy::default(),
            ..port_options()
        },
    )
    .expect("catalog");
    catalog.blueprints().await.expect("token");
    standin.faults(|f| f.burst_503 = 2);
    // A bound on a hang, far above the two short backoffs a working client needs.
    let blueprints = tokio::time::timeout(Duration::from_secs(60), catalog.blueprints())
        .await
        .expect("the retries waited for the rate window instead of backing off")
        .expect("blueprints after two 503s");
    assert_eq!(blueprints.len(), 2);
    let statuses: Vec<u16> = standin.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![200, 200, 503, 503, 200]);
}

#[tokio::test]
async fn a_request_port_finds_too_large_is_split_until_it_fits_and_a_lone_giant_is_rejected() {
    let standin = standin_with_blueprints().await;
    standin.faults(|f| f.body_limit = 4 * 1024);
    let catalog = catalog(&standin);
    let mut upserts = vec![account_entity("111")];
    for i in 0..20 {
        let mut u = bucket(&format!("b{i}"), "111");
        u.entity.properties = json!({"note": "x".repeat(300)}).as_object().cloned();
        upserts.push(u);
    }
    let mut giant = bucket("giant", "111");
    giant.entity.properties = json!({"note": "x".repeat(8 * 1024)}).as_object().cloned();
    upserts.push(giant);
    let report = catalogs::upserts(&catalog, upserts).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted.len(), 21);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].key.identifier, "giant");
    assert!(
        report.rejected[0].message.contains("too large"),
        "{:?}",
        report.rejected
    );
    assert!(standin.log().iter().any(|l| l.status == 413));
    assert_eq!(standin.entities().len(), 21);
}

#[tokio::test]
async fn a_stop_request_lets_the_blueprint_in_flight_finish_and_sends_nothing_after_it() {
    let standin = standin_with_blueprints().await;
    let catalog = catalog(&standin);
    let first = catalogs::upserts(&catalog, vec![bucket("old", "111111111111")]).await;
    assert_eq!(first.stopped, None);
    let writes = Writes {
        upserts: vec![
            account_entity("111111111111"),
            account_entity("222222222222"),
            bucket("b1", "111111111111"),
        ],
        deletes: vec![delete(BUCKET, "old", Some("111111111111"))],
        ..Writes::default()
    };
    let stopping = Counting::new(1);
    let report = catalog.apply(OWNER, &writes, &stopping).await;
    assert_eq!(
        report.stopped,
        Some(tidemark::core::writes::Stop::OnRequest)
    );
    // The accounts' batch was in flight and finished; the buckets' and the delete never went.
    assert_eq!(report.upserted.len(), 2, "{:?}", report.upserted);
    assert!(report.upserted.iter().all(|k| k.blueprint == ACCOUNT));
    assert_eq!(report.deleted, vec![]);
    let keys: Vec<(String, String)> = standin
        .entities()
        .into_iter()
        .map(|e| (e.blueprint, e.identifier))
        .collect();
    assert!(keys.contains(&(BUCKET.into(), "old".into())));
    assert!(!keys.contains(&(BUCKET.into(), "b1".into())));

    let rerun = catalog.apply(OWNER, &writes, &NoProgress).await;
    assert_eq!(rerun.stopped, None);
    assert_eq!(rerun.deleted, vec![EntityKey::new(BUCKET, "old")]);
}

#[tokio::test]
async fn a_stop_request_within_one_blueprint_lets_the_requests_in_flight_finish_and_starts_no_more()
{
    let standin = standin_with_blueprints().await;
    standin.faults(|f| f.latency = Duration::from_millis(20));
    let catalog = catalog(&standin);
    // 200 buckets of one blueprint and account: ten bulk requests, four in flight at a time.
    let writes = Writes {
        upserts: (0..200)
            .map(|i| bucket(&format!("b{i}"), "111111111111"))
            .collect(),
        ..Writes::default()
    };
    let stopping = Counting::new(1);
    let report = catalog.apply(OWNER, &writes, &stopping).await;
    assert_eq!(
        report.stopped,
        Some(tidemark::core::writes::Stop::OnRequest)
    );
    let written = report.upserted.len();
    assert!(
        (20..=80).contains(&written) && written % 20 == 0,
        "{written} written: only whole requests, and only those in flight"
    );
    let buckets = |standin: &PortStandIn| {
        standin
            .entities()
            .iter()
            .filter(|e| e.blueprint == BUCKET)
            .count()
    };
    assert_eq!(buckets(&standin), written);

    let rerun = catalog.apply(OWNER, &writes, &NoProgress).await;
    assert_eq!(rerun.stopped, None);
    assert_eq!(buckets(&standin), 200);
}

/// Sends one request to the stand-in with a fresh token, as a client that does not know Port's
/// rules might: (status, body).
async fn raw(standin: &PortStandIn, method: &str, path: &str, body: Json) -> (u16, Json) {
    let http = reqwest::Client::new();
    let token: Json = http
        .post(format!("{}/v1/auth/access_token", standin.url()))
        .json(&json!({"clientId": support::port_standin::CLIENT_ID,
                      "clientSecret": support::port_standin::CLIENT_SECRET}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let answer = http
        .request(method, format!("{}/v1{path}", standin.url()))
        .header(
            "Authorization",
            format!(
                "Bearer {}",
                token["accessToken"].as_str().unwrap_or_default()
            ),
        )
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn the_standin_refuses_every_request_shape_ports_reference_does_not_allow() {
    let standin = standin_with_blueprints().await;
    standin.expect_refusals();
    let search = "/blueprints/awsS3Bucket/entities/search";
    let bucket_bulk = "/blueprints/awsS3Bucket/entities/bulk";
    let twenty_one: Vec<Json> = (0..21)
        .map(|i| json!({"identifier": format!("b{i}")}))
        .collect();
    let hundred_one: Vec<String> = (0..101).map(|i| format!("b{i}")).collect();
    let malformed: Vec<(&str, String, Json)> = vec![
        // Search bodies: only query, include, exclude, limit (1 to 1000) and from.
        ("POST", search.into(), json!({"limit": 10, "sort": "title"})),
        ("POST", search.into(), json!({"limit": 0})),
        ("POST", search.into(), json!({"limit": 1001})),
        ("POST", search.into(), json!({"from": 3})),
        // include/exclude entries: the blueprint's own identifiers and $meta-properties.
        (
            "POST",
            search.into(),
            json!({"include": ["identifier", "properties"]}),
        ),
        ("POST", search.into(), json!({"exclude": ["relations"]})),
        (
            "POST",
            search.into(),
            json!({"include": ["$identifier", "nosuch"]}),
        ),
        // Rules: each variant with only its own keys.
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "xor", "rules": []}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [], "not": true}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"property": "account", "operator": "in", "value": ["111"]}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"property": "region", "operator": "=", "value": "x", "caseSensitive": true}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"relation": "account", "operator": "in", "value": ["111"], "targetProperty": "name"}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"relation": "nosuch", "operator": "in", "value": ["111"]}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"property": "region", "relation": "account", "operator": "=", "value": "x"}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"property": "region", "operator": "isEmpty", "value": null}]}}),
        ),
        (
            "POST",
            search.into(),
            json!({"query": {"combinator": "and", "rules": [
            {"property": "$identifier", "operator": "in", "value": [1, 2]}]}}),
        ),
        // Bulk upserts: 1 to 20 entities, upsert present, only `entities`.
        (
            "POST",
            format!("{bucket_bulk}?upsert=true"),
            json!({"entities": twenty_one}),
        ),
        (
            "POST",
            format!("{bucket_bulk}?upsert=true"),
            json!({"entities": []}),
        ),
        (
            "POST",
            bucket_bulk.into(),
            json!({"entities": [{"identifier": "b1"}]}),
        ),
        (
            "POST",
            format!("{bucket_bulk}?upsert=yes"),
            json!({"entities": [{"identifier": "b1"}]}),
        ),
        (
            "POST",
            format!("{bucket_bulk}?upsert=true"),
            json!({"entities": [{"identifier": "b1"}], "merge": true}),
        ),
        (
            "POST",
            format!("{bucket_bulk}?upsert=true"),
            json!({"entities": [{"identifier": "a b"}]}),
        ),
        // Bulk deletes: 1 to 100 identifiers, delete_dependents present.
        (
            "POST",
            "/blueprints/awsS3Bucket/bulk/entities/delete?delete_dependents=false".into(),
            json!({"entities": hundred_one}),
        ),
        (
            "POST",
            "/blueprints/awsS3Bucket/bulk/entities/delete".into(),
            json!({"entities": ["b1"]}),
        ),
        // Blueprints: closed schema and relation definitions.
        (
            "POST",
            "/blueprints".into(),
            json!({"identifier": "x", "title": "X",
            "schema": {"properties": {}, "type": "object"}}),
        ),
        (
            "POST",
            "/blueprints".into(),
            json!({"identifier": "x", "title": "X",
            "schema": {"properties": {}}, "relations": {"r": {"target": "x"}}}),
        ),
        (
            "PATCH",
            "/blueprints/awsS3Bucket".into(),
            json!({"schema": {"required": []}}),
        ),
    ];
    for (method, path, body) in &malformed {
        let (status, answer) = raw(&standin, method, path, body.clone()).await;
        assert_eq!(status, 422, "{method} {path} {body}: {answer}");
        assert_eq!(answer["ok"], false, "{answer}");
        assert!(
            answer["error"].is_string() && answer["message"].is_string(),
            "{answer}"
        );
    }
    assert_eq!(standin.refused().len(), malformed.len());

    // What the reference does allow goes through, including a relation rule.
    let (status, answer) = raw(
        &standin,
        "POST",
        search,
        json!({"query": {"combinator": "and", "rules": [
            {"relation": "account", "operator": "in", "value": ["111"], "targetProperty": "$identifier"},
            {"property": "$identifier", "operator": "in", "value": ["b1"]}]},
            "include": ["$identifier", "$title", "region", "account"], "limit": 1000}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A duplicate blueprint is one more 422: Port documents no 409 for it.
    let (status, _) = raw(&standin, "POST", "/blueprints", bucket_blueprint()).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_blueprint_create_whose_answer_is_lost_is_found_and_completed_on_the_retry() {
    let standin = PortStandIn::start().await;
    let catalog = catalog(&standin);
    // The create without relations commits, its answer is lost; the retried POST is a
    // duplicate that Port refuses, and the blueprint is found by reading it.
    standin.faults(|f| f.drop_after_commit = 1);
    let report = catalog
        .apply(OWNER, &bootstrap_writes_of_cycle(), &NoProgress)
        .await;
    assert_eq!(report.stopped, None);
    let creates: Vec<u16> = standin
        .log()
        .iter()
        .filter(|l| l.method == "POST" && l.path == "/v1/blueprints")
        .map(|l| l.status)
        .collect();
    assert_eq!(
        creates[..2],
        [0, 422],
        "a lost answer, then a duplicate: {creates:?}"
    );
    assert_eq!(
        standin.blueprint("cycA").expect("cycA")["relations"]["toB"]["target"],
        "cycB"
    );
    assert_eq!(
        standin.blueprint("cycB").expect("cycB")["relations"]["toA"]["target"],
        "cycA"
    );
}

fn bootstrap_writes_of_cycle() -> Writes {
    let mut writes = bootstrap_writes();
    writes
        .blueprints
        .retain(|c| matches!(c, BlueprintChange::Create { .. }));
    writes
}

#[tokio::test]
async fn the_token_type_port_names_is_the_authorization_scheme() {
    let standin = standin_with_blueprints().await;
    // The stand-in takes only `<tokenType> <token>`; a client that always sends `Bearer` is
    // refused with 401 twice and gives up.
    standin.faults(|f| f.token_type = "PortToken".into());
    let catalog = catalog(&standin);
    catalog.blueprints().await.expect("blueprints");
    assert_eq!(
        standin.log().iter().map(|l| l.status).collect::<Vec<_>>(),
        vec![200, 200]
    );
}
