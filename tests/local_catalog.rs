//! The local SQLite catalog against real files in temporary folders.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value as Json, json};
use support::catalogs::{
    Counting, LocalFixture, OWNER, bucket_blueprint, create, delete, deletes, entity, upsert,
    upserts,
};
use tidemark::adapters::Catalog;
use tidemark::adapters::local::LocalCatalog;
use tidemark::core::model::{Blueprint, EntityKey, ForeignReference};
use tidemark::core::writes::{
    ApplyReport, BlueprintChange, NoProgress, Upsert, WriteAction, Writes,
};

const OTHER: &str = "someone-else";

fn stored(
    catalog: &LocalCatalog,
    blueprint: &str,
    id: &str,
) -> tidemark::adapters::local::StoredEntity {
    catalog
        .entities(None, Some(blueprint))
        .expect("entities")
        .into_iter()
        .find(|e| e.identifier == id)
        .unwrap_or_else(|| panic!("{blueprint}/{id} is not stored"))
}

fn rejected_keys(report: &ApplyReport) -> Vec<String> {
    report.rejected.iter().map(|r| r.key.to_string()).collect()
}

#[tokio::test]
async fn owned_entities_come_back_with_every_field_present() {
    let f = LocalFixture::start().await;
    let report = upserts(
        &f.catalog,
        vec![upsert(
            entity(
                "bucket",
                "b1",
                json!({"properties": {"region": "us-east-1"}}),
            ),
            "111111111111",
            true,
            true,
        )],
    )
    .await;
    assert_eq!(report.upserted, vec![EntityKey::new("bucket", "b1")]);
    assert_eq!(report.write_requests, 1);

    let owned = f.catalog.owned(OWNER, &[]).await.expect("owned");
    assert_eq!(owned.len(), 1);
    let e = &owned[0];
    assert_eq!(e.account.as_deref(), Some("111111111111"));
    assert_eq!(e.kind.as_deref(), Some("AWS::S3::Bucket"));
    assert!(!e.placeholder);
    assert_eq!(e.entity.title, Some(Json::Null));
    assert_eq!(e.entity.icon, Some(Json::Null));
    assert_eq!(e.entity.team, Some(Json::Null));
    assert_eq!(e.entity.relations, Some(serde_json::Map::new()));
    assert_eq!(
        e.entity.properties,
        json!({"region": "us-east-1"}).as_object().cloned()
    );
    assert!(f.catalog.owned(OTHER, &[]).await.expect("owned").is_empty());
}

#[tokio::test]
async fn merge_keeps_unsent_fields_while_replace_keeps_only_what_was_sent() {
    let f = LocalFixture::start().await;
    let full = entity(
        "bucket",
        "b1",
        json!({"title": "B1", "icon": "Bucket", "properties": {"region": "us-east-1", "size": 3}}),
    );
    let mut first = full.clone();
    first.identifier = "b2".into();
    upserts(
        &f.catalog,
        vec![
            upsert(full, "1", true, true),
            upsert(first, "1", true, true),
        ],
    )
    .await;

    let partial = |id: &str| entity("bucket", id, json!({"properties": {"size": 7}}));
    let report = upserts(
        &f.catalog,
        vec![
            upsert(partial("b1"), "1", true, true),
            upsert(partial("b2"), "1", false, true),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);

    let merged = stored(&f.catalog, "bucket", "b1").entity;
    assert_eq!(merged.title, Some(json!("B1")));
    assert_eq!(merged.icon, Some(json!("Bucket")));
    assert_eq!(
        merged.properties,
        json!({"region": "us-east-1", "size": 7})
            .as_object()
            .cloned()
    );

    let replaced = stored(&f.catalog, "bucket", "b2").entity;
    assert_eq!(replaced.title, Some(Json::Null));
    assert_eq!(replaced.icon, Some(Json::Null));
    assert_eq!(replaced.properties, json!({"size": 7}).as_object().cloned());
}

#[tokio::test]
async fn invalid_entities_are_rejected_like_port_and_the_rest_is_written() {
    let f = LocalFixture::start().await;
    let report = upserts(
        &f.catalog,
        vec![
            upsert(
                entity(
                    "bucket",
                    "wrong-type",
                    json!({"properties": {"size": "big"}}),
                ),
                "1",
                true,
                true,
            ),
            upsert(
                entity(
                    "bucket",
                    "bad-enum",
                    json!({"properties": {"tier": "warm"}}),
                ),
                "1",
                true,
                true,
            ),
            upsert(
                entity(
                    "bucket",
                    "unknown-relation",
                    json!({"relations": {"owner": "x"}}),
                ),
                "1",
                true,
                true,
            ),
            upsert(
                entity(
                    "bucket",
                    "one-target",
                    json!({"relations": {"account": ["1", "2"]}}),
                ),
                "1",
                true,
                true,
            ),
            upsert(
                entity(
                    "bucket",
                    "many-targets",
                    json!({"relations": {"replicas": "b"}}),
                ),
                "1",
                true,
                true,
            ),
            upsert(entity("nope", "no-blueprint", json!({})), "1", true, true),
            upsert(entity("bucket", "bad id", json!({})), "1", true, true),
            upsert(
                entity("bucket", "fine", json!({"properties": {"tier": "hot"}})),
                "1",
                true,
                true,
            ),
        ],
    )
    .await;
    assert_eq!(report.upserted, vec![EntityKey::new("bucket", "fine")]);
    assert_eq!(
        rejected_keys(&report),
        [
            "bucket/wrong-type",
            "bucket/bad-enum",
            "bucket/unknown-relation",
            "bucket/one-target",
            "bucket/many-targets",
            "nope/no-blueprint",
            "bucket/bad id"
        ]
    );
    let message = |i: usize| report.rejected[i].message.clone();
    assert!(
        message(0).contains("properties.size must be number"),
        "{}",
        message(0)
    );
    assert!(message(1).contains("must be one of"), "{}", message(1));
    assert!(
        message(2).contains("relation \"owner\" is not defined"),
        "{}",
        message(2)
    );
    assert!(message(3).contains("one target"), "{}", message(3));
    assert!(message(4).contains("many targets"), "{}", message(4));
    assert!(
        message(5).contains("blueprint \"nope\" does not exist"),
        "{}",
        message(5)
    );
    assert!(
        report
            .rejected
            .iter()
            .all(|r| r.action == WriteAction::Upsert)
    );
    assert_eq!(f.catalog.entities(None, None).expect("entities").len(), 1);
}

#[tokio::test]
async fn missing_relation_targets_become_placeholders_owned_and_attributed_to_the_referrer() {
    let f = LocalFixture::start().await;
    let report = upserts(
        &f.catalog,
        vec![upsert(
            entity(
                "bucket",
                "b1",
                json!({"relations": {"account": "222222222222", "replicas": ["r1"]}}),
            ),
            "222222222222",
            true,
            true,
        )],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted, vec![EntityKey::new("bucket", "b1")]);

    let account = stored(&f.catalog, "awsAccount", "222222222222");
    assert!(account.placeholder);
    assert_eq!(account.owner, OWNER);
    assert_eq!(account.account.as_deref(), Some("222222222222"));
    assert_eq!(account.kind, None);
    assert_eq!(account.entity.properties, Some(serde_json::Map::new()));
    let replica = stored(&f.catalog, "bucket", "r1");
    assert!(replica.placeholder);

    let owned = f.catalog.owned(OWNER, &[]).await.expect("owned");
    let placeholders: Vec<String> = owned
        .iter()
        .filter(|e| e.placeholder)
        .map(|e| e.entity.key().to_string())
        .collect();
    assert_eq!(placeholders, ["awsAccount/222222222222", "bucket/r1"]);

    // Mapping the real account later is an ordinary update of the placeholder.
    let mut real = upsert(
        entity(
            "awsAccount",
            "222222222222",
            json!({"title": "prod", "properties": {"name": "prod"}}),
        ),
        "222222222222",
        true,
        true,
    );
    real.kind = "AWS::Account::Info".into();
    let report = upserts(&f.catalog, vec![real]).await;
    assert_eq!(report.rejected, vec![]);
    let account = stored(&f.catalog, "awsAccount", "222222222222");
    assert!(!account.placeholder);
    assert_eq!(account.kind.as_deref(), Some("AWS::Account::Info"));
    assert_eq!(account.entity.title, Some(json!("prod")));
    assert_eq!(
        f.catalog
            .entities(None, Some("awsAccount"))
            .expect("entities")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_missing_relation_target_without_create_missing_is_rejected_as_not_found() {
    let f = LocalFixture::start().await;
    let report = upserts(
        &f.catalog,
        vec![upsert(
            entity("bucket", "b1", json!({"relations": {"account": "333"}})),
            "333",
            true,
            false,
        )],
    )
    .await;
    assert_eq!(report.upserted, vec![]);
    assert_eq!(rejected_keys(&report), ["bucket/b1"]);
    assert!(
        report.rejected[0].message.contains("not found")
            && report.rejected[0].message.contains("awsAccount/333"),
        "{}",
        report.rejected[0].message
    );
    assert!(f.catalog.entities(None, None).expect("entities").is_empty());
}

#[tokio::test]
async fn a_target_written_later_in_the_same_apply_is_found_by_the_retry() {
    let f = LocalFixture::start().await;
    let report = upserts(
        &f.catalog,
        vec![
            upsert(
                entity("bucket", "b1", json!({"relations": {"account": "444"}})),
                "444",
                true,
                false,
            ),
            upsert(
                entity("awsAccount", "444", json!({"title": "dev"})),
                "444",
                true,
                false,
            ),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(
        report.upserted,
        vec![
            EntityKey::new("awsAccount", "444"),
            EntityKey::new("bucket", "b1")
        ]
    );
    assert!(!stored(&f.catalog, "awsAccount", "444").placeholder);
}

#[tokio::test]
async fn blueprints_that_relate_to_each_other_are_created_in_two_steps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = LocalCatalog::open(&dir.path().join("c.db")).expect("open");
    let a = Blueprint(json!({"identifier": "a", "schema": {"properties": {}},
        "relations": {"toB": {"target": "b", "many": false, "required": false}}}));
    let b = Blueprint(json!({"identifier": "b", "schema": {"properties": {}},
        "relations": {"toA": {"target": "a", "many": true, "required": false}}}));
    let report = catalog
        .apply(
            OWNER,
            &Writes {
                blueprints: vec![create(a.clone()), create(b.clone())],
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.blueprints_written, ["a", "b"]);
    assert_eq!(catalog.blueprints().await.expect("blueprints"), vec![a, b]);

    // Entities in a cycle: a1 creates b1 as an empty placeholder, then b1's own upsert fills it.
    let report = upserts(
        &catalog,
        vec![
            upsert(
                entity("a", "a1", json!({"relations": {"toB": "b1"}})),
                "1",
                true,
                true,
            ),
            upsert(
                entity("b", "b1", json!({"relations": {"toA": ["a1"]}})),
                "1",
                true,
                true,
            ),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted.len(), 2);
    let owned = catalog.owned(OWNER, &[]).await.expect("owned");
    assert_eq!(owned.len(), 2);
    assert!(owned.iter().all(|e| !e.placeholder));
}

#[tokio::test]
async fn a_relation_to_a_missing_blueprint_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = LocalCatalog::open(&dir.path().join("c.db")).expect("open");
    let a = Blueprint(json!({"identifier": "a", "schema": {"properties": {}},
        "relations": {"toB": {"target": "ghost", "many": false, "required": false}}}));
    let report = catalog
        .apply(
            OWNER,
            &Writes {
                blueprints: vec![create(a)],
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    assert_eq!(rejected_keys(&report), ["a/"]);
    assert!(report.rejected[0].message.contains("\"ghost\""));
}

#[tokio::test]
async fn a_blueprint_update_only_adds_what_is_missing() {
    let f = LocalFixture::start().await;
    let mut add_properties = serde_json::Map::new();
    // An existing property with another definition must stay as it is.
    add_properties.insert("region".into(), json!({"type": "number"}));
    add_properties.insert("arn".into(), json!({"type": "string", "format": "url"}));
    let mut add_relations = serde_json::Map::new();
    add_relations.insert("account".into(), json!({"target": "bucket", "many": true}));
    add_relations.insert("source".into(), json!({"target": "bucket", "many": false}));
    let report = f
        .catalog
        .apply(
            OWNER,
            &Writes {
                blueprints: vec![BlueprintChange::Update {
                    identifier: "bucket".into(),
                    add_properties,
                    add_relations,
                }],
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.blueprints_written, ["bucket"]);
    let blueprints = f.catalog.blueprints().await.expect("blueprints");
    let bucket = blueprints
        .iter()
        .find(|b| b.identifier() == "bucket")
        .expect("bucket blueprint");
    let mut expected = bucket_blueprint().0;
    expected["schema"]["properties"]["arn"] = json!({"type": "string", "format": "url"});
    expected["relations"]["source"] = json!({"target": "bucket", "many": false});
    assert_eq!(bucket.0, expected);

    // Creating it again (an interrupted bootstrap) changes nothing that is there.
    let report = f
        .catalog
        .apply(
            OWNER,
            &Writes {
                blueprints: vec![create(bucket_blueprint())],
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    assert_eq!(report.rejected, vec![]);
    let again = f.catalog.blueprints().await.expect("blueprints");
    assert_eq!(again, blueprints);
}

#[tokio::test]
async fn foreign_finds_other_owners_entities_among_thousands_of_keys() {
    let f = LocalFixture::start().await;
    f.catalog
        .insert_foreign(OTHER, &entity("bucket", "theirs-1", json!({"title": "T"})))
        .expect("seed");
    f.catalog
        .insert_foreign(OTHER, &entity("bucket", "theirs-2", json!({})))
        .expect("seed");
    upserts(
        &f.catalog,
        vec![upsert(entity("bucket", "ours", json!({})), "1", true, true)],
    )
    .await;

    let mut keys: Vec<EntityKey> = (0..5000)
        .map(|i| EntityKey::new("bucket", format!("absent-{i}")))
        .collect();
    keys.push(EntityKey::new("bucket", "theirs-1"));
    keys.push(EntityKey::new("bucket", "ours"));
    keys.push(EntityKey::new("awsAccount", "theirs-2"));
    let foreign = f.catalog.foreign(OWNER, &keys).await.expect("foreign");
    assert_eq!(foreign.len(), 1);
    assert_eq!(foreign[0].owner, OTHER);
    assert_eq!(
        foreign[0].entity.key(),
        EntityKey::new("bucket", "theirs-1")
    );
    assert_eq!(foreign[0].entity.title, Some(json!("T")));
    assert!(
        f.catalog
            .foreign(OWNER, &[])
            .await
            .expect("foreign")
            .is_empty()
    );
}

#[tokio::test]
async fn foreign_references_list_other_owners_entities_that_relate_to_ours() {
    let f = LocalFixture::start().await;
    upserts(
        &f.catalog,
        vec![
            upsert(entity("awsAccount", "1", json!({})), "1", true, true),
            upsert(
                entity("bucket", "ours", json!({"relations": {"account": "1"}})),
                "1",
                true,
                true,
            ),
        ],
    )
    .await;
    f.catalog
        .insert_foreign(
            OTHER,
            &entity(
                "bucket",
                "theirs",
                json!({"relations": {"account": "1", "replicas": ["ours", "x"]}}),
            ),
        )
        .expect("seed");

    let keys = [
        EntityKey::new("awsAccount", "1"),
        EntityKey::new("bucket", "ours"),
        EntityKey::new("bucket", "unrelated"),
    ];
    let refs = f
        .catalog
        .foreign_references(OWNER, &keys)
        .await
        .expect("refs");
    let referrer = EntityKey::new("bucket", "theirs");
    assert_eq!(
        refs,
        vec![
            ForeignReference {
                target: EntityKey::new("awsAccount", "1"),
                referrer: referrer.clone(),
                owner: OTHER.into()
            },
            ForeignReference {
                target: EntityKey::new("bucket", "ours"),
                referrer,
                owner: OTHER.into()
            },
        ]
    );
    // Our own bucket relates to the account too, but it is not foreign.
    assert!(
        f.catalog
            .foreign_references(OTHER, &[EntityKey::new("bucket", "theirs")])
            .await
            .expect("refs")
            .is_empty()
    );
}

#[tokio::test]
async fn a_delete_with_dependents_is_refused_but_dependents_first_succeeds() {
    let f = LocalFixture::start().await;
    upserts(
        &f.catalog,
        vec![
            upsert(entity("awsAccount", "1", json!({})), "1", true, true),
            upsert(
                entity("bucket", "b1", json!({"relations": {"account": "1"}})),
                "1",
                true,
                true,
            ),
            upsert(
                entity("bucket", "b2", json!({"relations": {"account": "1"}})),
                "1",
                true,
                true,
            ),
        ],
    )
    .await;

    let report = deletes(&f.catalog, vec![delete("awsAccount", "1", None)]).await;
    assert_eq!(report.deleted, vec![]);
    assert_eq!(rejected_keys(&report), ["awsAccount/1"]);
    let message = &report.rejected[0].message;
    assert!(
        message.contains("bucket/b1") && message.contains("bucket/b2"),
        "{message}"
    );
    assert_eq!(report.rejected[0].action, WriteAction::Delete);

    let report = deletes(
        &f.catalog,
        vec![
            delete("bucket", "b1", None),
            delete("bucket", "b2", None),
            delete("awsAccount", "1", None),
            delete("bucket", "never-existed", None),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.deleted.len(), 4);
    assert!(f.catalog.entities(None, None).expect("entities").is_empty());
    assert!(
        f.catalog
            .foreign_references(OTHER, &[EntityKey::new("awsAccount", "1")])
            .await
            .expect("refs")
            .is_empty()
    );
}

#[tokio::test]
async fn a_delete_of_another_owners_entity_is_refused() {
    let f = LocalFixture::start().await;
    f.catalog
        .insert_foreign(OTHER, &entity("bucket", "theirs", json!({})))
        .expect("seed");
    let report = deletes(&f.catalog, vec![delete("bucket", "theirs", None)]).await;
    assert_eq!(rejected_keys(&report), ["bucket/theirs"]);
    assert_eq!(stored(&f.catalog, "bucket", "theirs").owner, OTHER);
}

#[tokio::test]
async fn a_key_is_unique_across_owners_and_an_upsert_adopts_the_entity() {
    let f = LocalFixture::start().await;
    f.catalog
        .insert_foreign(
            OTHER,
            &entity(
                "bucket",
                "shared",
                json!({"title": "theirs", "properties": {"region": "eu-west-1"}}),
            ),
        )
        .expect("seed");
    let report = upserts(
        &f.catalog,
        vec![upsert(
            entity("bucket", "shared", json!({"properties": {"size": 1}})),
            "555",
            true,
            true,
        )],
    )
    .await;
    assert_eq!(report.rejected, vec![]);

    let all = f.catalog.entities(None, Some("bucket")).expect("entities");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].owner, OWNER);
    assert_eq!(all[0].account.as_deref(), Some("555"));
    // Merged into what the other owner had written.
    assert_eq!(all[0].entity.title, Some(json!("theirs")));
    assert_eq!(
        all[0].entity.properties,
        json!({"region": "eu-west-1", "size": 1})
            .as_object()
            .cloned()
    );
    assert!(
        f.catalog
            .foreign(OWNER, &[EntityKey::new("bucket", "shared")])
            .await
            .expect("foreign")
            .is_empty()
    );
}

#[tokio::test]
async fn a_second_apply_waits_for_the_lock_then_fails_naming_the_file_and_pid() {
    let f = LocalFixture::start().await;
    let catalog = f.catalog.with_lock_timeout(Duration::from_millis(300));
    // Another process holding the lock: a separate open file description with its own flock.
    let mut holder = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(catalog.lock_path())
        .expect("lock file");
    holder.lock().expect("take the lock");
    writeln!(holder, "424242").expect("write pid");

    let report = upserts(
        &catalog,
        vec![upsert(entity("bucket", "b1", json!({})), "1", true, true)],
    )
    .await;
    let stopped = report.stopped.expect("the apply stops").to_string();
    assert!(stopped.contains("locked"), "{stopped}");
    assert!(stopped.contains("424242"), "{stopped}");
    assert!(
        stopped.contains(&catalog.lock_path().display().to_string()),
        "{stopped}"
    );
    assert_eq!(report.upserted, vec![]);
    assert!(catalog.entities(None, None).expect("entities").is_empty());

    // Reads never need the lock.
    assert!(catalog.owned(OWNER, &[]).await.expect("owned").is_empty());
    drop(holder);
}

#[tokio::test]
async fn a_waiting_apply_proceeds_once_the_lock_is_released() {
    let f = LocalFixture::start().await;
    let catalog = f.catalog.with_lock_timeout(Duration::from_secs(20));
    let holder = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(catalog.lock_path())
        .expect("lock file");
    holder.lock().expect("take the lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(holder);
    });
    let report = upserts(
        &catalog,
        vec![upsert(entity("bucket", "b1", json!({})), "1", true, true)],
    )
    .await;
    release.join().expect("release thread");
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted, vec![EntityKey::new("bucket", "b1")]);
}

fn buckets(n: usize) -> Vec<Upsert> {
    (0..n)
        .map(|i| {
            upsert(
                entity(
                    "bucket",
                    &format!("b{i}"),
                    json!({"title": format!("B{i}"), "properties": {"size": i}, "relations": {"account": format!("{}", i % 7)}}),
                ),
                &format!("{}", i % 7),
                true,
                true,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_stop_request_ends_the_apply_after_the_batch_in_flight_and_a_rerun_completes_it() {
    let f = LocalFixture::start().await;
    let old = upserts(&f.catalog, buckets(1200)).await;
    assert_eq!(old.upserted.len(), 1200);
    let writes = Writes {
        blueprints: vec![],
        upserts: buckets(1200)
            .into_iter()
            .map(|mut u| {
                u.entity.title = Some(json!("renamed"));
                u
            })
            .collect(),
        deletes: vec![delete("bucket", "b0", None)],
    };
    // Asked to stop once the first batch (500 writes) is in.
    let stopping = Counting::new(1);
    let report = f.catalog.apply(OWNER, &writes, &stopping).await;
    assert_eq!(
        report.stopped,
        Some(tidemark::core::writes::Stop::OnRequest)
    );
    assert_eq!(report.upserted.len(), 500, "more than the batch in flight");
    assert_eq!(report.deleted, vec![]);
    let renamed = |catalog: &LocalCatalog| {
        catalog
            .entities(Some(OWNER), Some("bucket"))
            .expect("entities")
            .iter()
            .filter(|e| e.entity.title == Some(json!("renamed")))
            .count()
    };
    assert_eq!(renamed(&f.catalog), 500);

    let rerun = f
        .catalog
        .apply(OWNER, &writes, &Counting::new(u64::MAX))
        .await;
    assert_eq!(rerun.stopped, None);
    assert_eq!(renamed(&f.catalog), 1199);
    assert_eq!(rerun.deleted, vec![EntityKey::new("bucket", "b0")]);
}

#[tokio::test]
async fn many_writes_survive_a_reopen_and_a_rerun_converges_without_duplicates() {
    let f = LocalFixture::start().await;
    let writes = Writes {
        blueprints: vec![],
        upserts: buckets(1500),
        deletes: vec![],
    };
    let progress = Counting::new(u64::MAX);
    let report = f.catalog.apply(OWNER, &writes, &progress).await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted.len(), 1500);
    assert_eq!(report.write_requests, 1500);
    assert_eq!(progress.total.load(Ordering::SeqCst), 1500);
    assert_eq!(progress.done.load(Ordering::SeqCst), 1500);
    let before = f.catalog.entities(None, None).expect("entities");
    drop(f.catalog);

    let reopened = LocalCatalog::open(&f.path).expect("reopen");
    let after = reopened.entities(None, None).expect("entities");
    assert_eq!(after, before);
    assert_eq!(after.len(), 1500 + 7);
    assert_eq!(after.iter().filter(|e| e.placeholder).count(), 7);

    // The same writes again (a re-run after a crash) leave the same content.
    let report = reopened.apply(OWNER, &writes, &NoProgress).await;
    assert_eq!(report.upserted.len(), 1500);
    let rerun = reopened.entities(None, None).expect("entities");
    assert_eq!(rerun.len(), after.len());
    for (a, b) in rerun.iter().zip(&after) {
        assert_eq!(
            (&a.entity, &a.content_hash, &a.owner),
            (&b.entity, &b.content_hash, &b.owner)
        );
    }
}

#[tokio::test]
async fn the_file_is_plain_sqlite_with_entity_json_as_text() {
    let f = LocalFixture::start().await;
    upserts(
        &f.catalog,
        vec![upsert(
            entity(
                "bucket",
                "b1",
                json!({"properties": {"region": "us-east-1"}, "relations": {"account": "9"}}),
            ),
            "9",
            true,
            true,
        )],
    )
    .await;
    let conn = rusqlite_connection(&f.path);
    let (region, owner, hash): (String, String, String) = conn
        .query_row(
            "SELECT json_extract(entity, '$.properties.region'), owner, content_hash
             FROM entities WHERE blueprint = 'bucket' AND identifier = 'b1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("query");
    assert_eq!((region.as_str(), owner.as_str()), ("us-east-1", OWNER));
    assert_eq!(hash.len(), 64);
    let relations: i64 = conn
        .query_row("SELECT count(*) FROM relations WHERE target_blueprint = 'awsAccount' AND target_identifier = '9'", [], |row| row.get(0))
        .expect("query");
    assert_eq!(relations, 1);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open with plain rusqlite")
}

#[test]
fn a_file_from_a_newer_tidemark_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("catalog.db");
    drop(LocalCatalog::open(&path).expect("create"));
    rusqlite_connection(&path)
        .pragma_update(None, "user_version", 99)
        .expect("bump version");
    let error = LocalCatalog::open(&path).err().expect("refused");
    let message = error.to_string();
    assert!(message.contains("newer tidemark"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn entities_filter_by_owner_and_blueprint() {
    let f = LocalFixture::start().await;
    upserts(
        &f.catalog,
        vec![
            upsert(entity("awsAccount", "1", json!({})), "1", true, true),
            upsert(entity("bucket", "ours", json!({})), "1", true, true),
        ],
    )
    .await;
    f.catalog
        .insert_foreign(OTHER, &entity("bucket", "theirs", json!({})))
        .expect("seed");
    let ids = |owner: Option<&str>, bp: Option<&str>| -> Vec<String> {
        f.catalog
            .entities(owner, bp)
            .expect("entities")
            .into_iter()
            .map(|e| format!("{}:{}/{}", e.owner, e.blueprint, e.identifier))
            .collect()
    };
    assert_eq!(
        ids(None, None),
        [
            "aws-prod:awsAccount/1",
            "aws-prod:bucket/ours",
            "someone-else:bucket/theirs"
        ]
    );
    assert_eq!(
        ids(Some(OWNER), None),
        ["aws-prod:awsAccount/1", "aws-prod:bucket/ours"]
    );
    assert_eq!(ids(Some(OWNER), Some("bucket")), ["aws-prod:bucket/ours"]);
    assert_eq!(
        ids(None, Some("bucket")),
        ["aws-prod:bucket/ours", "someone-else:bucket/theirs"]
    );
}

#[tokio::test]
async fn the_same_entity_in_another_key_order_is_stored_identically_and_is_no_change() {
    let f = LocalFixture::start().await;
    let written = entity(
        "bucket",
        "b1",
        json!({"properties": {"tier": "hot", "region": "us-east-1", "tags": {"team": "core", "env": "prod"}}}),
    );
    let reordered = entity(
        "bucket",
        "b1",
        json!({"properties": {"tags": {"env": "prod", "team": "core"}, "region": "us-east-1", "tier": "hot"}}),
    );
    // The two really differ in order, so the test cannot pass by accident.
    assert_ne!(
        serde_json::to_string(&written).expect("json"),
        serde_json::to_string(&reordered).expect("json")
    );
    let report = upserts(
        &f.catalog,
        vec![upsert(written.clone(), "111111111111", true, true)],
    )
    .await;
    assert_eq!(report.upserted.len(), 1);
    let first = stored(&f.catalog, "bucket", "b1");
    let owned = f.catalog.owned(OWNER, &[]).await.expect("owned");
    for desired in [&written, &reordered] {
        for merge in [true, false] {
            assert!(
                tidemark::core::reconcile::compare::same_fields(desired, &owned[0].entity, merge),
                "merge={merge}: {desired:?} against {:?}",
                owned[0].entity
            );
        }
    }
    let basis = tidemark::core::reconcile::plan::owned_hashes(&owned);

    let report = upserts(
        &f.catalog,
        vec![upsert(reordered, "111111111111", false, true)],
    )
    .await;
    assert_eq!(report.upserted.len(), 1);
    let second = stored(&f.catalog, "bucket", "b1");
    assert_eq!(
        serde_json::to_string(&second.entity).expect("json"),
        serde_json::to_string(&first.entity).expect("json")
    );
    assert_eq!(second.content_hash, first.content_hash);
    let owned = f.catalog.owned(OWNER, &[]).await.expect("owned");
    assert_eq!(tidemark::core::reconcile::plan::owned_hashes(&owned), basis);
}
