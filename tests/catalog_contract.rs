//! The catalog contract: the same cases against the local catalog (a SQLite file in a temporary
//! folder) and the Port catalog (the real HTTP client against the Port stand-in), because both
//! must behave as Port does. `cargo test --test catalog_contract` lists each case twice, as
//! `local::<case>` and `port::<case>`. Every case reads back what the catalog stores (the SQLite
//! rows, the stand-in's state) or lists through its own reads, not only the apply's report.

mod support;

use std::sync::atomic::Ordering;

use serde_json::json;

use support::catalogs::{
    ADOPT_PREFIX, CatalogFixture, Counting, Holder, KIND, LocalFixture, OWNER, PortFixture, Stored,
    Writer, delete, deletes, entity, fields, owned_view, upsert, upserts,
};
use tidemark::adapters::Catalog;
use tidemark::core::model::EntityKey;
use tidemark::core::writes::{ApplyReport, NoProgress, Stop, Upsert, WriteAction, Writes};

const A: &str = "111111111111";
const B: &str = "222222222222";

/// Runs every case against a fresh local catalog (`local::case`) and a fresh Port stand-in
/// (`port::case`). `#[port_ignore = "why"]` skips the Port run of a case that states behaviour the
/// Port catalog does not have yet.
macro_rules! contract {
    ($($(#[port_ignore = $reason:literal])? $case:ident,)*) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::LocalFixture::start().await).await;
                }
            )*
        }
        mod port {
            $(
                #[tokio::test]
                $(#[ignore = $reason])?
                async fn $case() {
                    super::$case(&super::PortFixture::start().await).await;
                }
            )*
        }
    };
}

contract! {
    an_upsert_creates_the_entity_owned_and_attributed_to_its_account,
    an_upsert_of_an_existing_entity_updates_it_in_place_and_may_move_its_account,
    an_upsert_of_the_same_entity_again_leaves_it_as_it_was,
    an_apply_with_nothing_to_write_changes_nothing,
    an_invalid_entity_is_rejected_and_the_rest_is_written,
    merge_keeps_the_fields_a_write_does_not_send_and_merges_properties_key_by_key,
    replace_keeps_only_the_fields_a_write_sends,
    a_delete_removes_the_entity_and_one_already_gone_counts_as_deleted,
    a_delete_of_an_entity_others_relate_to_is_refused_until_they_go_first,
    a_delete_that_a_foreign_entity_relates_to_is_refused,
    #[port_ignore = "the Port catalog deletes by key: Port's API cannot make a delete conditional \
                     on $datasource, and the adapter does not check the owner first"]
    a_delete_of_an_entity_another_owner_holds_is_refused,
    missing_relation_targets_become_placeholders_owned_and_attributed_to_the_referrer,
    a_placeholder_written_for_real_later_is_updated_in_place,
    a_missing_relation_target_without_create_missing_is_rejected_and_nothing_is_stored,
    a_relation_target_written_later_in_the_same_apply_is_found_by_the_retry,
    a_chain_of_relation_targets_in_reverse_order_is_written_whole_and_a_lost_target_is_rejected,
    owned_lists_only_this_integrations_entities_each_with_its_account,
    owned_still_attributes_entities_of_accounts_no_longer_discovered,
    foreign_reports_entities_other_owners_hold_at_the_keys_asked_for,
    an_upsert_at_a_foreign_key_takes_the_entity_over_and_merges_into_it,
    foreign_references_list_other_owners_entities_that_relate_to_ours,
    a_stop_requested_before_the_first_write_writes_nothing,
    a_stop_requested_after_a_write_keeps_what_was_confirmed_and_sends_nothing_after_it,
    an_apply_with_nothing_to_write_does_not_report_a_stop,
}

/// Upserts one entity as [`OWNER`].
async fn write<F: CatalogFixture>(f: &F, upsert: Upsert) -> ApplyReport {
    upserts(f.catalog(), vec![upsert]).await
}

fn key(blueprint: &str, id: &str) -> EntityKey {
    EntityKey::new(blueprint, id)
}

fn keys(stored: &[Stored]) -> Vec<EntityKey> {
    stored.iter().map(|s| s.key.clone()).collect()
}

fn sorted(mut keys: Vec<EntityKey>) -> Vec<EntityKey> {
    keys.sort();
    keys
}

fn rejected_keys(report: &ApplyReport) -> Vec<EntityKey> {
    report.rejected.iter().map(|r| r.key.clone()).collect()
}

fn accounts(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn ours(account: &str) -> Holder {
    Holder::Us(Some(account.to_string()))
}

/// An account entity of `id`, written for that account.
fn account_entity(id: &str) -> Upsert {
    upsert(
        entity(
            "awsAccount",
            id,
            json!({"title": id, "properties": {"name": id}}),
        ),
        id,
        true,
        false,
    )
}

/// A bucket of `account` that relates to the account entity.
fn bucket_of(id: &str, account: &str) -> Upsert {
    upsert(
        entity(
            "bucket",
            id,
            json!({"properties": {"region": "us-east-1"}, "relations": {"account": account}}),
        ),
        account,
        true,
        false,
    )
}

// Upsert.

async fn an_upsert_creates_the_entity_owned_and_attributed_to_its_account<F: CatalogFixture>(
    f: &F,
) {
    let written = entity(
        "bucket",
        "b1",
        json!({"title": "B1", "properties": {"region": "us-east-1", "size": 3}}),
    );
    let report = upserts(f.catalog(), vec![upsert(written.clone(), A, true, true)]).await;
    assert_eq!(report.upserted, vec![key("bucket", "b1")]);
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.stopped, None);

    assert_eq!(
        f.stored(),
        vec![Stored {
            key: key("bucket", "b1"),
            holder: ours(A),
            placeholder: false,
            fields: fields(&written),
        }]
    );
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A]))
        .await
        .expect("owned");
    assert_eq!(
        owned_view(&owned),
        vec![(key("bucket", "b1"), Some(A.into()), false, fields(&written))]
    );
    // Port keeps no place for the kind; the local catalog returns it.
    assert_eq!(owned[0].kind.as_deref(), f.keeps_kind().then_some(KIND));
}

async fn an_upsert_of_an_existing_entity_updates_it_in_place_and_may_move_its_account<
    F: CatalogFixture,
>(
    f: &F,
) {
    let first = entity(
        "bucket",
        "b1",
        json!({"title": "B1", "properties": {"region": "us-east-1"}}),
    );
    upserts(f.catalog(), vec![upsert(first, A, true, true)]).await;
    let second = entity(
        "bucket",
        "b1",
        json!({"title": "renamed", "properties": {"region": "eu-west-1", "size": 5}}),
    );
    let report = upserts(f.catalog(), vec![upsert(second.clone(), B, true, true)]).await;
    assert_eq!(report.upserted, vec![key("bucket", "b1")]);
    assert_eq!(report.rejected, vec![]);

    assert_eq!(
        f.stored(),
        vec![Stored {
            key: key("bucket", "b1"),
            holder: ours(B),
            placeholder: false,
            fields: fields(&second),
        }]
    );
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A, B]))
        .await
        .expect("owned");
    assert_eq!(
        owned_view(&owned),
        vec![(key("bucket", "b1"), Some(B.into()), false, fields(&second))]
    );
}

async fn an_upsert_of_the_same_entity_again_leaves_it_as_it_was<F: CatalogFixture>(f: &F) {
    let written = entity(
        "bucket",
        "b1",
        json!({"title": "B1", "properties": {"region": "us-east-1", "tags": {"team": "core", "env": "prod"}}}),
    );
    upserts(f.catalog(), vec![upsert(written.clone(), A, true, true)]).await;
    let before = f.stored();
    let owned_before = f.catalog().owned(OWNER, &accounts(&[A])).await;

    for merge in [true, false] {
        let report = upserts(f.catalog(), vec![upsert(written.clone(), A, merge, true)]).await;
        assert_eq!(report.upserted, vec![key("bucket", "b1")], "merge={merge}");
        assert_eq!(report.rejected, vec![], "merge={merge}");
        assert_eq!(f.stored(), before, "merge={merge}");
        let owned = f.catalog().owned(OWNER, &accounts(&[A])).await;
        assert_eq!(
            owned_view(&owned.expect("owned")),
            owned_view(owned_before.as_ref().expect("owned")),
            "merge={merge}"
        );
    }
}

async fn an_apply_with_nothing_to_write_changes_nothing<F: CatalogFixture>(f: &F) {
    let sent = entity("bucket", "b1", json!({}));
    write(f, upsert(sent, A, true, true)).await;
    let before = f.stored();
    let report = f
        .catalog()
        .apply(OWNER, &Writes::default(), &NoProgress)
        .await;
    assert_eq!(report, ApplyReport::default());
    assert_eq!(f.stored(), before);
}

async fn an_invalid_entity_is_rejected_and_the_rest_is_written<F: CatalogFixture>(f: &F) {
    let report = upserts(
        f.catalog(),
        vec![
            upsert(
                entity("bucket", "wrong", json!({"properties": {"size": "big"}})),
                A,
                true,
                true,
            ),
            upsert(
                entity("bucket", "fine", json!({"properties": {"size": 1}})),
                A,
                true,
                true,
            ),
        ],
    )
    .await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted, vec![key("bucket", "fine")]);
    assert_eq!(rejected_keys(&report), vec![key("bucket", "wrong")]);
    assert_eq!(report.rejected[0].action, WriteAction::Upsert);
    let message = &report.rejected[0].message;
    assert!(
        message.contains("size") && message.contains("number"),
        "the message names the property and the rule: {message}"
    );
    assert_eq!(keys(&f.stored()), vec![key("bucket", "fine")]);
}

// Merge.

/// A bucket with every field set, relating to account A (written too).
async fn write_full_bucket<F: CatalogFixture>(f: &F) {
    let report = upserts(
        f.catalog(),
        vec![
            account_entity(A),
            upsert(
                entity(
                    "bucket",
                    "b1",
                    json!({"title": "B1", "icon": "Bucket",
                           "properties": {"region": "us-east-1", "size": 3},
                           "relations": {"account": A}}),
                ),
                A,
                true,
                false,
            ),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
}

async fn merge_keeps_the_fields_a_write_does_not_send_and_merges_properties_key_by_key<
    F: CatalogFixture,
>(
    f: &F,
) {
    write_full_bucket(f).await;
    let sent = entity(
        "bucket",
        "b1",
        json!({"properties": {"size": 7, "tier": "hot"}}),
    );
    let report = write(f, upsert(sent, A, true, false)).await;
    assert_eq!(report.rejected, vec![]);
    let stored = f.find("bucket", "b1").expect("b1 stored");
    assert_eq!(
        stored.fields,
        json!({"title": "B1", "icon": "Bucket", "team": null,
               "properties": {"region": "us-east-1", "size": 7, "tier": "hot"},
               "relations": {"account": A}})
    );
}

async fn replace_keeps_only_the_fields_a_write_sends<F: CatalogFixture>(f: &F) {
    write_full_bucket(f).await;
    let sent = entity("bucket", "b1", json!({"properties": {"size": 7}}));
    let report = write(f, upsert(sent, A, false, false)).await;
    assert_eq!(report.rejected, vec![]);
    let stored = f.find("bucket", "b1").expect("b1 stored");
    assert_eq!(
        stored.fields,
        json!({"title": null, "icon": null, "team": null,
               "properties": {"size": 7}, "relations": {}})
    );
    assert_eq!(stored.holder, ours(A));
}

// Delete.

async fn a_delete_removes_the_entity_and_one_already_gone_counts_as_deleted<F: CatalogFixture>(
    f: &F,
) {
    upserts(
        f.catalog(),
        vec![
            upsert(entity("bucket", "b1", json!({})), A, true, true),
            upsert(entity("bucket", "b2", json!({})), A, true, true),
        ],
    )
    .await;
    let report = deletes(
        f.catalog(),
        vec![
            delete("bucket", "b1", Some(A)),
            delete("bucket", "never-existed", Some(A)),
        ],
    )
    .await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.rejected, vec![]);
    assert_eq!(
        sorted(report.deleted),
        vec![key("bucket", "b1"), key("bucket", "never-existed")]
    );
    assert_eq!(keys(&f.stored()), vec![key("bucket", "b2")]);
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A]))
        .await
        .expect("owned");
    let owned: Vec<EntityKey> = owned_view(&owned).into_iter().map(|o| o.0).collect();
    assert_eq!(owned, vec![key("bucket", "b2")]);
}

async fn a_delete_of_an_entity_others_relate_to_is_refused_until_they_go_first<
    F: CatalogFixture,
>(
    f: &F,
) {
    let report = upserts(
        f.catalog(),
        vec![account_entity(A), bucket_of("b1", A), bucket_of("b2", A)],
    )
    .await;
    assert_eq!(report.rejected, vec![]);

    let report = deletes(f.catalog(), vec![delete("awsAccount", A, Some(A))]).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.deleted, vec![]);
    assert_eq!(rejected_keys(&report), vec![key("awsAccount", A)]);
    assert_eq!(report.rejected[0].action, WriteAction::Delete);
    assert_eq!(keys(&f.stored()).len(), 3, "nothing cascades");

    // Dependents first, as the plan orders deletes.
    let report = deletes(
        f.catalog(),
        vec![
            delete("bucket", "b1", Some(A)),
            delete("bucket", "b2", Some(A)),
            delete("awsAccount", A, Some(A)),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.deleted.len(), 3);
    assert_eq!(f.stored(), vec![]);
}

async fn a_delete_that_a_foreign_entity_relates_to_is_refused<F: CatalogFixture>(f: &F) {
    upserts(f.catalog(), vec![account_entity(A)]).await;
    f.seed(
        Writer::Ocean,
        &entity("bucket", "theirs", json!({"relations": {"account": A}})),
    );
    let report = deletes(f.catalog(), vec![delete("awsAccount", A, Some(A))]).await;
    assert_eq!(report.deleted, vec![]);
    assert_eq!(rejected_keys(&report), vec![key("awsAccount", A)]);
    assert_eq!(
        f.find("awsAccount", A).map(|s| s.holder),
        Some(ours(A)),
        "the target stays"
    );
    assert_eq!(
        f.find("bucket", "theirs").map(|s| s.holder),
        Some(Holder::Them(Writer::Ocean)),
        "nothing cascades"
    );
}

async fn a_delete_of_an_entity_another_owner_holds_is_refused<F: CatalogFixture>(f: &F) {
    f.seed(Writer::Ocean, &entity("bucket", "theirs", json!({})));
    let report = deletes(f.catalog(), vec![delete("bucket", "theirs", None)]).await;
    assert_eq!(report.deleted, vec![]);
    assert_eq!(rejected_keys(&report), vec![key("bucket", "theirs")]);
    assert_eq!(report.rejected[0].action, WriteAction::Delete);
    assert_eq!(
        f.find("bucket", "theirs").map(|s| s.holder),
        Some(Holder::Them(Writer::Ocean))
    );
}

// Missing relation targets.

async fn missing_relation_targets_become_placeholders_owned_and_attributed_to_the_referrer<
    F: CatalogFixture,
>(
    f: &F,
) {
    let sent = entity(
        "bucket",
        "b1",
        json!({"relations": {"account": B, "replicas": ["r1"]}}),
    );
    let report = write(f, upsert(sent, B, true, true)).await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.upserted, vec![key("bucket", "b1")]);

    let empty =
        json!({"title": null, "icon": null, "team": null, "properties": {}, "relations": {}});
    let placeholder = |blueprint: &str, id: &str| Stored {
        key: key(blueprint, id),
        holder: ours(B),
        placeholder: true,
        fields: empty.clone(),
    };
    let stored = f.stored();
    assert_eq!(stored.len(), 3, "{stored:#?}");
    assert!(
        stored.contains(&placeholder("awsAccount", B)),
        "{stored:#?}"
    );
    assert!(stored.contains(&placeholder("bucket", "r1")), "{stored:#?}");

    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[B]))
        .await
        .expect("owned");
    let placeholders: Vec<(EntityKey, Option<String>)> = owned_view(&owned)
        .into_iter()
        .filter(|o| o.2)
        .map(|o| (o.0, o.1))
        .collect();
    assert_eq!(
        placeholders,
        vec![
            (key("awsAccount", B), Some(B.into())),
            (key("bucket", "r1"), Some(B.into()))
        ]
    );
}

async fn a_placeholder_written_for_real_later_is_updated_in_place<F: CatalogFixture>(f: &F) {
    let sent = entity("bucket", "b1", json!({"relations": {"account": B}}));
    write(f, upsert(sent, B, true, true)).await;
    assert_eq!(f.find("awsAccount", B).map(|s| s.placeholder), Some(true));

    let report = upserts(f.catalog(), vec![account_entity(B)]).await;
    assert_eq!(report.rejected, vec![]);
    let account = f.find("awsAccount", B).expect("account stored");
    assert!(!account.placeholder);
    assert_eq!(account.holder, ours(B));
    assert_eq!(account.fields["title"], json!(B));
    assert_eq!(
        keys(&f.stored()),
        vec![key("awsAccount", B), key("bucket", "b1")]
    );
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[B]))
        .await
        .expect("owned");
    assert!(owned.iter().all(|o| !o.placeholder), "{owned:#?}");
}

async fn a_missing_relation_target_without_create_missing_is_rejected_and_nothing_is_stored<
    F: CatalogFixture,
>(
    f: &F,
) {
    let report = upserts(f.catalog(), vec![bucket_of("b1", "333333333333")]).await;
    assert_eq!(report.stopped, None);
    assert_eq!(report.upserted, vec![]);
    assert_eq!(rejected_keys(&report), vec![key("bucket", "b1")]);
    assert_eq!(report.rejected[0].action, WriteAction::Upsert);
    let message = report.rejected[0].message.replace('_', " ");
    assert!(message.contains("not found"), "{message}");
    assert_eq!(f.stored(), vec![]);
}

async fn a_relation_target_written_later_in_the_same_apply_is_found_by_the_retry<
    F: CatalogFixture,
>(
    f: &F,
) {
    // Out of relation order: the bucket comes before its account.
    let report = upserts(f.catalog(), vec![bucket_of("b1", A), account_entity(A)]).await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(
        sorted(report.upserted),
        vec![key("awsAccount", A), key("bucket", "b1")]
    );
    let stored = f.stored();
    assert_eq!(
        keys(&stored),
        vec![key("awsAccount", A), key("bucket", "b1")]
    );
    assert!(stored.iter().all(|s| !s.placeholder), "{stored:#?}");
}

/// The retry goes on while a pass writes something, however long the chain: each pass here
/// writes one more link. It ends when a pass writes nothing, and rejects what is left.
async fn a_chain_of_relation_targets_in_reverse_order_is_written_whole_and_a_lost_target_is_rejected<
    F: CatalogFixture,
>(
    f: &F,
) {
    let replica_of = |id: &str, target: Option<&str>| {
        let relations = match target {
            Some(t) => json!({"replicas": [t]}),
            None => json!({}),
        };
        upsert(
            entity("bucket", id, json!({"relations": relations})),
            A,
            true,
            false,
        )
    };
    let chain: Vec<String> = (1..=12).map(|n| format!("b{n:02}")).collect();
    // b12 → b11 → … → b01, sent from b12 down, then one whose target never appears.
    let mut sent: Vec<Upsert> = (1..chain.len())
        .rev()
        .map(|n| replica_of(&chain[n], Some(&chain[n - 1])))
        .collect();
    sent.push(replica_of(&chain[0], None));
    sent.push(replica_of("lost", Some("nowhere")));
    let writes = Writes {
        upserts: sent,
        ..Writes::default()
    };
    let progress = Counting::new(u64::MAX);
    let report = f.catalog().apply(OWNER, &writes, &progress).await;
    assert_eq!(report.stopped, None);
    // Each write counts once, when it is settled, however many passes it took.
    assert_eq!(progress.total.load(Ordering::SeqCst), 13);
    assert_eq!(progress.done.load(Ordering::SeqCst), 13);
    assert_eq!(rejected_keys(&report), vec![key("bucket", "lost")]);
    let message = report.rejected[0].message.replace('_', " ");
    assert!(message.contains("not found"), "{message}");
    let written: Vec<EntityKey> = chain.iter().map(|id| key("bucket", id)).collect();
    assert_eq!(sorted(report.upserted), written);
    assert_eq!(keys(&f.stored()), written);
}

// Ownership.

/// Accounts A and B with a bucket each, written by us; a bucket of another tidemark integration
/// and one of an Ocean integration.
async fn write_two_accounts_and_foreign_buckets<F: CatalogFixture>(f: &F) {
    let report = upserts(
        f.catalog(),
        vec![
            account_entity(A),
            account_entity(B),
            bucket_of("b-a", A),
            bucket_of("b-b", B),
        ],
    )
    .await;
    assert_eq!(report.rejected, vec![]);
    f.seed(
        Writer::OtherIntegration,
        &entity("bucket", "staging", json!({"relations": {"account": A}})),
    );
    f.seed(
        Writer::Ocean,
        &entity("bucket", "ocean", json!({"title": "Theirs"})),
    );
}

async fn owned_lists_only_this_integrations_entities_each_with_its_account<F: CatalogFixture>(
    f: &F,
) {
    write_two_accounts_and_foreign_buckets(f).await;
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A, B]))
        .await
        .expect("owned");
    let found: Vec<(EntityKey, Option<String>, bool)> = owned_view(&owned)
        .into_iter()
        .map(|o| (o.0, o.1, o.2))
        .collect();
    assert_eq!(
        found,
        vec![
            (key("awsAccount", A), Some(A.into()), false),
            (key("awsAccount", B), Some(B.into()), false),
            (key("bucket", "b-a"), Some(A.into()), false),
            (key("bucket", "b-b"), Some(B.into()), false),
        ]
    );
    assert_eq!(
        f.find("bucket", "staging").map(|s| s.holder),
        Some(Holder::Them(Writer::OtherIntegration))
    );
}

async fn owned_still_attributes_entities_of_accounts_no_longer_discovered<F: CatalogFixture>(
    f: &F,
) {
    write_two_accounts_and_foreign_buckets(f).await;
    // Discovery returns A only: B's entities are still ours, and still B's, so that the plan can
    // delete them as a gone account's.
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A]))
        .await
        .expect("owned");
    let found: Vec<(EntityKey, Option<String>)> =
        owned_view(&owned).into_iter().map(|o| (o.0, o.1)).collect();
    assert_eq!(
        found,
        vec![
            (key("awsAccount", A), Some(A.into())),
            (key("awsAccount", B), Some(B.into())),
            (key("bucket", "b-a"), Some(A.into())),
            (key("bucket", "b-b"), Some(B.into())),
        ]
    );
}

async fn foreign_reports_entities_other_owners_hold_at_the_keys_asked_for<F: CatalogFixture>(
    f: &F,
) {
    write_two_accounts_and_foreign_buckets(f).await;
    let asked = [
        key("bucket", "b-a"),
        key("bucket", "ocean"),
        key("bucket", "staging"),
        key("bucket", "absent"),
        key("awsAccount", "ocean"),
    ];
    let mut foreign = f.catalog().foreign(OWNER, &asked).await.expect("foreign");
    foreign.sort_by_key(|found| found.entity.key());
    let found: Vec<EntityKey> = foreign.iter().map(|found| found.entity.key()).collect();
    assert_eq!(
        found,
        vec![key("bucket", "ocean"), key("bucket", "staging")]
    );
    // The owner is what `integration.adopt` is matched against.
    assert!(
        foreign[0].owner.starts_with(ADOPT_PREFIX),
        "{:?}",
        foreign[0].owner
    );
    assert_eq!(fields(&foreign[0].entity)["title"], json!("Theirs"));
    assert!(
        foreign[1].owner != OWNER && !foreign[1].owner.starts_with(ADOPT_PREFIX),
        "{:?}",
        foreign[1].owner
    );
    assert_eq!(
        f.catalog()
            .foreign(OWNER, &[])
            .await
            .expect("foreign")
            .len(),
        0
    );
}

async fn an_upsert_at_a_foreign_key_takes_the_entity_over_and_merges_into_it<F: CatalogFixture>(
    f: &F,
) {
    f.seed(
        Writer::Ocean,
        &entity(
            "bucket",
            "shared",
            json!({"title": "theirs", "properties": {"region": "eu-west-1"}}),
        ),
    );
    let sent = entity("bucket", "shared", json!({"properties": {"size": 1}}));
    let report = write(f, upsert(sent, A, true, true)).await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(
        f.stored(),
        vec![Stored {
            key: key("bucket", "shared"),
            holder: ours(A),
            placeholder: false,
            fields: json!({"title": "theirs", "icon": null, "team": null,
                           "properties": {"region": "eu-west-1", "size": 1}, "relations": {}}),
        }]
    );
    let foreign = f
        .catalog()
        .foreign(OWNER, &[key("bucket", "shared")])
        .await
        .expect("foreign");
    assert!(foreign.is_empty(), "{foreign:?}");
    let owned = f
        .catalog()
        .owned(OWNER, &accounts(&[A]))
        .await
        .expect("owned");
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].entity.key(), key("bucket", "shared"));
}

async fn foreign_references_list_other_owners_entities_that_relate_to_ours<F: CatalogFixture>(
    f: &F,
) {
    let report = upserts(f.catalog(), vec![account_entity(A), bucket_of("ours", A)]).await;
    assert_eq!(report.rejected, vec![]);
    f.seed(
        Writer::Ocean,
        &entity(
            "bucket",
            "theirs",
            json!({"relations": {"account": A, "replicas": ["ours"]}}),
        ),
    );
    let asked = [
        key("awsAccount", A),
        key("bucket", "ours"),
        key("bucket", "unrelated"),
    ];
    let mut refs = f
        .catalog()
        .foreign_references(OWNER, &asked)
        .await
        .expect("references");
    refs.sort();
    let pairs: Vec<(EntityKey, EntityKey)> =
        refs.into_iter().map(|r| (r.target, r.referrer)).collect();
    // Our own bucket relates to the account too, but it is not foreign.
    assert_eq!(
        pairs,
        vec![
            (key("awsAccount", A), key("bucket", "theirs")),
            (key("bucket", "ours"), key("bucket", "theirs")),
        ]
    );
}

// Stop on request.

/// Writes `old`, then returns writes that upsert two accounts and a bucket and delete `old`.
async fn writes_after_old<F: CatalogFixture>(f: &F) -> Writes {
    let sent = entity(
        "bucket",
        "old",
        json!({"properties": {"region": "us-east-1"}}),
    );
    let report = write(f, upsert(sent, A, true, false)).await;
    assert_eq!(report.rejected, vec![]);
    Writes {
        upserts: vec![account_entity(A), account_entity(B), bucket_of("b1", A)],
        deletes: vec![delete("bucket", "old", Some(A))],
        ..Writes::default()
    }
}

async fn a_stop_requested_before_the_first_write_writes_nothing<F: CatalogFixture>(f: &F) {
    let writes = writes_after_old(f).await;
    let before = f.stored();
    let report = f.catalog().apply(OWNER, &writes, &Counting::new(0)).await;
    assert_eq!(report.stopped, Some(Stop::OnRequest));
    assert_eq!(report.upserted, vec![]);
    assert_eq!(report.deleted, vec![]);
    assert_eq!(report.write_requests, 0);
    assert_eq!(f.stored(), before);
}

async fn a_stop_requested_after_a_write_keeps_what_was_confirmed_and_sends_nothing_after_it<
    F: CatalogFixture,
>(
    f: &F,
) {
    let writes = writes_after_old(f).await;
    let report = f.catalog().apply(OWNER, &writes, &Counting::new(1)).await;
    assert_eq!(report.stopped, Some(Stop::OnRequest));
    assert_eq!(report.rejected, vec![]);
    assert!(!report.upserted.is_empty(), "the first batch went through");
    // Every upsert the report confirms is stored, and none it does not.
    for u in &writes.upserts {
        let k = u.entity.key();
        assert_eq!(
            f.find(&k.blueprint, &k.identifier).is_some(),
            report.upserted.contains(&k),
            "{k}: {report:?}"
        );
    }
    assert_eq!(report.deleted, vec![], "the delete comes after the stop");
    assert!(f.find("bucket", "old").is_some());

    let rerun = f.catalog().apply(OWNER, &writes, &NoProgress).await;
    assert_eq!(rerun.stopped, None);
    assert_eq!(rerun.deleted, vec![key("bucket", "old")]);
    assert_eq!(
        keys(&f.stored()),
        vec![
            key("awsAccount", A),
            key("awsAccount", B),
            key("bucket", "b1")
        ]
    );
}

async fn an_apply_with_nothing_to_write_does_not_report_a_stop<F: CatalogFixture>(f: &F) {
    // A stop ends an apply before its last write; with no writes there is nothing to end early.
    let report = f
        .catalog()
        .apply(OWNER, &Writes::default(), &Counting::new(0))
        .await;
    assert_eq!(report, ApplyReport::default());
}
