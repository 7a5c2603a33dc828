//! Cloud Control as it really behaves (issue 14): S3 buckets across regions, global kinds listed
//! from the partition's standard region, one listing per resource model and models derived from
//! a parent listing, types missing in a region, downstream errors, and list handlers that stop
//! short. The stand-in answers as AWS does (see `tests/support/cloudcontrol.rs`), whatever
//! tidemark expects.

use super::*;
use support::cloudcontrol::CrossRegion;

const QUEUE: &str = "AWS::SQS::Queue";
const TOPIC: &str = "AWS::SNS::Topic";

#[tokio::test]
async fn a_general_service_exception_is_retried_like_throttling_unless_its_message_says_denied() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_plain(&cc, QUEUE, 5);
    add_plain(&cc, TOPIC, 2);
    // A downstream hiccup: three times, then served.
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: None,
        kind: Some(QUEUE.into()),
        effect: Effect::Transient {
            code: "GeneralServiceException".into(),
            message:
                "Internal error reported from downstream service during operation 'ListQueues'."
                    .into(),
            times: 3,
        },
    });
    // The downstream service's own AccessDenied: no retry will fix it.
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: None,
        kind: Some(TOPIC.into()),
        effect: Effect::Error {
            code: "GeneralServiceException".into(),
            message: "User is not authorized to perform: SNS:ListTopics (Service: Sns, Status Code: 403, Request ID: 1)".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(QUEUE), kind(TOPIC)], list_of(&["us-east-1"])),
    )
    .await;
    let plan = plan_for(&report, &items, &[QUEUE, TOPIC]);
    assert_complete_scope(&report, &plan, QUEUE);
    assert_eq!(items.iter().filter(|i| i.kind == QUEUE).count(), 5);
    assert_failed_scope(
        &report,
        &plan,
        TOPIC,
        &["GeneralServiceException", "not authorized"],
    );
    let topic_calls = cc.calls().iter().filter(|c| c.kind == TOPIC).count();
    assert_eq!(topic_calls, 1, "a denial is not retried");
}

const BUCKET: &str = "AWS::S3::Bucket";
const ROLE: &str = "AWS::IAM::Role";

/// An account's regions with opt-in ones first in sorted order, as `af-south-1` and `ap-east-1`
/// sort before `us-east-1`.
const WITH_OPT_IN: [&str; 4] = ["af-south-1", "ap-east-1", "eu-west-1", "us-east-1"];

fn global_listing(report: &SourceReport, kind: &str) -> Listing {
    listing_of(report, kind)
}

#[tokio::test]
async fn global_kinds_are_listed_from_the_partitions_standard_region_never_an_opt_in_one_first() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(HOSTILE, &WITH_OPT_IN);
    for region in WITH_OPT_IN {
        cc.add(HOSTILE, region, ROLE, &format!("role-{region}"), json!({}));
    }
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![kind(ROLE)], Regions::Enabled)).await;
    let listing = global_listing(&report, ROLE);
    assert_eq!(
        (listing.region.as_str(), listing.error),
        ("us-east-1", None)
    );
    let listed: Vec<&str> = items.iter().map(|i| i.identifier.as_str()).collect();
    assert_eq!(listed, vec!["role-us-east-1"]);
    let asked: Vec<String> = cc.calls().iter().map(|c| c.region.clone()).collect();
    assert_eq!(asked, vec!["us-east-1"], "asked once, in the home region");
}

#[tokio::test]
async fn a_global_kind_moves_to_the_next_region_when_a_policy_denies_one_and_fails_when_all_do() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(HOSTILE, &WITH_OPT_IN);
    for region in WITH_OPT_IN {
        cc.add(HOSTILE, region, ROLE, &format!("role-{region}"), json!({}));
    }
    // A service control policy denies us-east-1: eu-west-1, the next standard region, lists.
    let deny = |region: &str| Fault {
        account: Some(HOSTILE.into()),
        region: Some(region.into()),
        kind: None,
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: format!("explicit deny in a service control policy ({region})"),
        },
    };
    cc.inject(deny("us-east-1"));
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![kind(ROLE)], Regions::Enabled)).await;
    let listing = global_listing(&report, ROLE);
    assert_eq!(
        (listing.region.as_str(), listing.error),
        ("eu-west-1", None)
    );
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].region, "eu-west-1");

    // Every region denied: the scope fails, naming each region tried, in order.
    for region in ["eu-west-1", "af-south-1", "ap-east-1"] {
        cc.inject(deny(region));
    }
    let (report, items) = run(&source, &request(vec![kind(ROLE)], Regions::Enabled)).await;
    assert!(items.is_empty());
    let plan = plan_for(&report, &items, &[ROLE]);
    let listing = global_listing(&report, ROLE);
    assert_eq!(listing.region, "us-east-1");
    let error = listing.error.unwrap_or_default();
    assert!(error.starts_with("AccessDeniedException"), "{error}");
    let tried = ["us-east-1", "eu-west-1", "af-south-1", "ap-east-1"].map(|r| {
        error
            .find(r)
            .unwrap_or_else(|| panic!("{r} not named: {error}"))
    });
    assert!(tried.windows(2).all(|w| w[0] < w[1]), "{error}");
    assert!(
        plan.withheld
            .iter()
            .any(|w| w.identifier == "aws_iam_role-gone")
    );
}

#[tokio::test]
async fn an_account_without_the_home_region_lists_global_kinds_from_its_first_standard_region() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(
        HOSTILE,
        &["af-south-1", "me-south-1", "us-west-2", "eu-central-1"],
    );
    let source = hostile_source(&sts, &cc).await;
    let (report, _) = run(&source, &request(vec![kind(ROLE)], Regions::Enabled)).await;
    assert_eq!(global_listing(&report, ROLE).region, "eu-central-1");
}

/// Buckets in standard and opt-in regions of an account whose regions sort opt-in first.
fn add_buckets(cc: &CloudControl) -> Vec<(&'static str, &'static str)> {
    let buckets = vec![
        ("logs-us-east-1", "us-east-1"),
        ("assets-eu-west-1", "eu-west-1"),
        ("cape-af-south-1", "af-south-1"),
        ("hk-ap-east-1", "ap-east-1"),
    ];
    cc.set_regions(HOSTILE, &WITH_OPT_IN);
    for (name, home) in &buckets {
        cc.add_bucket(
            HOSTILE,
            home,
            name,
            json!({"BucketName": name, "VersioningConfiguration": {"Status": "Enabled"}}),
        );
    }
    buckets
}

fn bucket_spec() -> KindSpec {
    let mut spec = kind(BUCKET);
    spec.use_get_resource_api = true;
    spec
}

fn get_calls(cc: &CloudControl, identifier_kind: &str) -> usize {
    cc.calls()
        .iter()
        .filter(|c| c.operation == "GetResource" && c.kind == identifier_kind)
        .count()
}

#[tokio::test]
async fn every_bucket_is_read_in_a_region_that_can_read_it_and_carries_its_own_region() {
    for answer in [
        CrossRegion::Served,
        CrossRegion::NotFound,
        CrossRegion::Redirect,
    ] {
        let sts = StsStandIn::start().await;
        let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
        cc.set_cross_region(answer);
        let buckets = add_buckets(&cc);
        let source = hostile_source(&sts, &cc).await;
        let (report, items) = run(&source, &request(vec![bucket_spec()], Regions::Enabled)).await;
        let listing = global_listing(&report, BUCKET);
        assert_eq!(
            (listing.region.as_str(), listing.error.as_deref()),
            ("us-east-1", None),
            "{answer:?}"
        );
        let mut read: Vec<(String, String)> = items
            .iter()
            .map(|i| (i.identifier.clone(), i.region.clone()))
            .collect();
        read.sort();
        let mut expected: Vec<(String, String)> = buckets
            .iter()
            .map(|(name, home)| (name.to_string(), home.to_string()))
            .collect();
        expected.sort();
        assert_eq!(
            read, expected,
            "{answer:?}: every bucket, in its own region"
        );
        assert!(
            items
                .iter()
                .all(|i| i.properties["VersioningConfiguration"]["Status"] == "Enabled"),
            "{answer:?}: mapped from the full model: {items:?}"
        );
        let plan = plan_for(&report, &items, &[BUCKET]);
        assert_complete_scope(&report, &plan, BUCKET);
        assert_eq!(
            plan.summary.delete, 1,
            "only the gone entity: {:?}",
            plan.changes
        );

        // The regions found are kept: the next run reads each bucket once, where it lives.
        let before = get_calls(&cc, BUCKET);
        let (_, again) = run(&source, &request(vec![bucket_spec()], Regions::Enabled)).await;
        assert_eq!(again.len(), 4);
        assert_eq!(
            get_calls(&cc, BUCKET) - before,
            4,
            "{answer:?}: one read per bucket"
        );
        let calls = cc.calls();
        let reads: Vec<&support::cloudcontrol::CcCall> = calls
            .iter()
            .filter(|c| c.operation == "GetResource")
            .collect();
        for call in &reads[reads.len() - 4..] {
            assert!(
                buckets
                    .iter()
                    .any(|(n, h)| *n == call.identifier && *h == call.region),
                "{answer:?}: {} read in {}",
                call.identifier,
                call.region
            );
        }
    }
}

#[tokio::test]
async fn buckets_in_opt_in_regions_cost_one_read_per_region_tried_standard_regions_first() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_cross_region(CrossRegion::NotFound);
    add_buckets(&cc);
    let source = hostile_source(&sts, &cc).await;
    run(&source, &request(vec![bucket_spec()], Regions::Enabled)).await;
    let tried = |bucket: &str| -> Vec<String> {
        cc.calls()
            .iter()
            .filter(|c| c.operation == "GetResource" && c.identifier == bucket)
            .map(|c| c.region.clone())
            .collect()
    };
    assert_eq!(tried("logs-us-east-1"), vec!["us-east-1"]);
    assert_eq!(tried("assets-eu-west-1"), vec!["us-east-1", "eu-west-1"]);
    assert_eq!(
        tried("cape-af-south-1"),
        vec!["us-east-1", "eu-west-1", "af-south-1"]
    );
    assert_eq!(
        tried("hk-ap-east-1"),
        vec!["us-east-1", "eu-west-1", "af-south-1", "ap-east-1"]
    );
}

#[tokio::test]
async fn a_bucket_is_gone_only_when_every_enabled_region_says_not_found() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_buckets(&cc);
    // Deleted between the listing and the reads.
    cc.add_bucket(
        HOSTILE,
        "af-south-1",
        "deleted-after-listing",
        serde_json::Value::Null,
    );
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![bucket_spec()], Regions::Enabled)).await;
    assert_eq!(global_listing(&report, BUCKET).error, None);
    assert_eq!(items.len(), 4);
    assert!(
        !items
            .iter()
            .any(|i| i.identifier == "deleted-after-listing")
    );

    // With a configured region list, a bucket may live in a region tidemark was not given:
    // not found in all of them proves nothing, so the scope fails.
    let (report, items) = run(
        &source,
        &request(vec![bucket_spec()], list_of(&["eu-west-1", "us-east-1"])),
    )
    .await;
    let plan = plan_for(&report, &items, &[BUCKET]);
    assert_failed_scope(
        &report,
        &plan,
        BUCKET,
        &[
            "deleted-after-listing",
            "ResourceNotFoundException",
            "source.regions",
        ],
    );
    // The buckets in the listed regions are still read; those in the others could not be.
    let read: BTreeSet<&str> = items.iter().map(|i| i.identifier.as_str()).collect();
    assert!(
        read.contains("logs-us-east-1") && read.contains("assets-eu-west-1"),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_bucket_whose_own_region_refuses_fails_the_scope_instead_of_counting_as_gone() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_cross_region(CrossRegion::NotFound);
    add_buckets(&cc);
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: Some("af-south-1".into()),
        kind: Some(BUCKET.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "explicit deny in a service control policy".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![bucket_spec()], Regions::Enabled)).await;
    let plan = plan_for(&report, &items, &[BUCKET]);
    assert_failed_scope(
        &report,
        &plan,
        BUCKET,
        &["cape-af-south-1", "af-south-1", "AccessDeniedException"],
    );
    assert_eq!(items.len(), 3, "the other buckets are read");
}

#[tokio::test]
async fn a_snapshot_replays_buckets_under_their_listing_in_their_own_regions() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_buckets(&cc);
    for region in WITH_OPT_IN {
        cc.add(HOSTILE, region, ROLE, &format!("role-{region}"), json!({}));
    }
    let source = hostile_source(&sts, &cc).await;
    let both = request(vec![bucket_spec(), kind(ROLE)], Regions::Enabled);
    let (report, items) = run(&source, &both).await;
    assert_eq!(items.len(), 5);

    let dir = tempfile::tempdir().expect("tempdir");
    tidemark::adapters::snapshot::write_snapshot(dir.path(), &report, &items, "now")
        .expect("snapshot written");
    let replay = tidemark::adapters::snapshot::SnapshotSource::new(dir.path(), Regions::Enabled);
    let (replayed_report, replayed) = run_source(&replay, &both).await;
    let mut recorded = report.listings.clone();
    let mut listings = replayed_report.listings.clone();
    recorded.sort();
    listings.sort();
    assert_eq!(listings, recorded);
    let regions = |items: &[RawItem]| -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|i| (i.identifier.clone(), i.region.clone()))
            .collect()
    };
    assert_eq!(regions(&replayed), regions(&items));
    assert!(
        replayed
            .iter()
            .filter(|i| i.kind == BUCKET)
            .all(|i| i.properties["VersioningConfiguration"]["Status"] == "Enabled")
    );
}

const CLUSTER: &str = "AWS::EKS::Cluster";
const NODEGROUP: &str = "AWS::EKS::Nodegroup";

/// Two EKS clusters in two regions, with nodegroups: blue (us-east-1: blue-a, blue-b) and green
/// (eu-west-1: green-a).
fn add_clusters(cc: &CloudControl) {
    cc.set_regions(HOSTILE, &["eu-west-1", "us-east-1"]);
    for (cluster, region, groups) in [
        ("blue", "us-east-1", &["blue-a", "blue-b"][..]),
        ("green", "eu-west-1", &["green-a"][..]),
    ] {
        cc.add(HOSTILE, region, CLUSTER, cluster, json!({"Name": cluster}));
        for group in groups {
            cc.add(
                HOSTILE,
                region,
                NODEGROUP,
                &format!("{cluster}/{group}"),
                json!({"ClusterName": cluster, "NodegroupName": group}),
            );
        }
    }
}

fn nodegroups_of(cluster: &str, region: &str) -> KindSpec {
    let mut spec = kind(NODEGROUP);
    spec.resource_model = Some(json!({ "ClusterName": cluster }));
    spec.region_policy.allow = vec![region.into()];
    spec
}

#[tokio::test]
async fn a_child_type_listed_without_its_parent_is_an_invalid_request_naming_the_property() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    let source = hostile_source(&sts, &cc).await;
    let (report, _) = run(
        &source,
        &request(vec![kind(NODEGROUP)], list_of(&["us-east-1"])),
    )
    .await;
    let error = listing_of(&report, NODEGROUP).error.unwrap_or_default();
    assert!(
        error.starts_with("InvalidRequestException")
            && error.contains("Required property: [ClusterName]"),
        "{error}"
    );
}

#[tokio::test]
async fn every_resource_model_of_a_kind_is_listed_and_is_a_scope_of_its_own() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    let source = hostile_source(&sts, &cc).await;
    let specs = vec![
        nodegroups_of("blue", "us-east-1"),
        nodegroups_of("green", "eu-west-1"),
    ];
    let (report, items) = run(&source, &request(specs.clone(), Regions::Enabled)).await;
    let mut listed: Vec<(String, String, Option<String>)> = items
        .iter()
        .map(|i| (i.identifier.clone(), i.region.clone(), i.model.clone()))
        .collect();
    listed.sort();
    let blue = Some(r#"{"ClusterName":"blue"}"#.to_string());
    let green = Some(r#"{"ClusterName":"green"}"#.to_string());
    assert_eq!(
        listed,
        vec![
            ("blue/blue-a".into(), "us-east-1".into(), blue.clone()),
            ("blue/blue-b".into(), "us-east-1".into(), blue.clone()),
            ("green/green-a".into(), "eu-west-1".into(), green.clone()),
        ]
    );
    let scopes: Vec<(String, Option<String>, Option<String>)> = report
        .listings
        .iter()
        .map(|l| (l.region.clone(), l.model.clone(), l.error.clone()))
        .collect();
    assert_eq!(
        scopes,
        vec![
            ("eu-west-1".into(), green.clone(), None),
            ("us-east-1".into(), blue.clone(), None),
        ]
    );

    // Green's listing fails: its scope is the failed one, named with its model, and blue's
    // items still arrive.
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: Some("eu-west-1".into()),
        kind: Some(NODEGROUP.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "not authorized to perform eks:ListNodegroups".into(),
        },
    });
    let (report, items) = run(&source, &request(specs, Regions::Enabled)).await;
    assert_eq!(items.len(), 2);
    let failed: Vec<(&str, Option<&str>)> = report
        .listings
        .iter()
        .filter(|l| l.error.is_some())
        .map(|l| (l.region.as_str(), l.model.as_deref()))
        .collect();
    assert_eq!(failed, vec![("eu-west-1", green.as_deref())]);
    let plan = plan_for(&report, &items, &[NODEGROUP]);
    let line = &plan.scopes[0];
    assert_eq!(
        (line.region.as_str(), line.model.clone()),
        ("eu-west-1", green)
    );
    let withheld = plan
        .withheld
        .iter()
        .find(|w| w.identifier == "aws_eks_nodegroup-gone")
        .expect("withheld");
    assert!(
        withheld
            .detail
            .contains(r#"resource model {"ClusterName":"green"}"#),
        "{}",
        withheld.detail
    );
}

#[tokio::test]
async fn a_snapshot_keeps_each_resource_models_scope_and_items_apart() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    // Both clusters in one region, so that one file holds both models' items.
    cc.add(
        HOSTILE,
        "us-east-1",
        CLUSTER,
        "green",
        json!({"Name": "green"}),
    );
    cc.add(
        HOSTILE,
        "us-east-1",
        NODEGROUP,
        "green/green-east",
        json!({"ClusterName": "green", "NodegroupName": "green-east"}),
    );
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: Some("eu-west-1".into()),
        kind: Some(NODEGROUP.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "denied".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let mut green = nodegroups_of("green", "us-east-1");
    green.region_policy.allow = Vec::new();
    let specs = request(
        vec![nodegroups_of("blue", "us-east-1"), green],
        Regions::Enabled,
    );
    let (report, items) = run(&source, &specs).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(report.listings.len(), 3);

    let dir = tempfile::tempdir().expect("tempdir");
    tidemark::adapters::snapshot::write_snapshot(dir.path(), &report, &items, "now")
        .expect("snapshot written");
    let replay = tidemark::adapters::snapshot::SnapshotSource::new(dir.path(), Regions::Enabled);
    let (replayed_report, replayed) = run_source(&replay, &specs).await;
    let mut recorded = report.listings.clone();
    let mut listings = replayed_report.listings.clone();
    recorded.sort();
    listings.sort();
    assert_eq!(listings, recorded);
    let key = |items: &[RawItem]| -> BTreeSet<(String, Option<String>)> {
        items
            .iter()
            .map(|i| (i.identifier.clone(), i.model.clone()))
            .collect()
    };
    assert_eq!(key(&replayed), key(&items));
}

/// The specs `kinds()` makes of a mapping file (nothing here maps them).
fn specs_of(mapping: &str) -> Vec<KindSpec> {
    let source = tidemark::core::mapping::MappingSource {
        name: "mapping.yaml".into(),
        text: mapping.into(),
    };
    let (mappings, _) = tidemark::core::mapping::Mappings::load(
        &[source],
        &tidemark::core::mapping::LoadOptions::default(),
    )
    .expect("the mapping compiles");
    mappings.kinds()
}

/// Nodegroups listed per cluster, as `ng` entities.
fn nodegroups_from_clusters() -> String {
    support::fixtures::nodegroups_from_clusters(
        "    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"ng\"'\n",
    )
}

#[tokio::test]
async fn nodegroups_are_listed_once_per_cluster_the_cluster_listing_found_in_each_region() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    // A cluster without nodegroups costs a listing and gives nothing.
    cc.add(
        HOSTILE,
        "us-east-1",
        CLUSTER,
        "empty",
        json!({"Name": "empty"}),
    );
    let source = hostile_source(&sts, &cc).await;
    let specs = specs_of(&nodegroups_from_clusters());
    let (report, items) = run(&source, &request(specs, Regions::Enabled)).await;
    let mut listed: Vec<(String, String)> = items
        .iter()
        .filter(|i| i.kind == NODEGROUP)
        .map(|i| (i.identifier.clone(), i.region.clone()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("blue/blue-a".to_string(), "us-east-1".to_string()),
            ("blue/blue-b".to_string(), "us-east-1".to_string()),
            ("green/green-a".to_string(), "eu-west-1".to_string()),
        ]
    );
    let mut scopes: Vec<(String, String, Option<String>, bool)> = report
        .listings
        .iter()
        .map(|l| {
            (
                l.kind.clone(),
                l.region.clone(),
                l.model.clone(),
                l.error.is_none(),
            )
        })
        .collect();
    scopes.sort();
    let model = |c: &str| Some(format!(r#"{{"ClusterName":"{c}"}}"#));
    assert_eq!(
        scopes,
        vec![
            (CLUSTER.into(), "eu-west-1".into(), None, true),
            (CLUSTER.into(), "us-east-1".into(), None, true),
            (NODEGROUP.into(), "eu-west-1".into(), model("green"), true),
            (NODEGROUP.into(), "us-east-1".into(), model("blue"), true),
            (NODEGROUP.into(), "us-east-1".into(), model("empty"), true),
        ]
    );
    // Each nodegroup listing asked for one cluster, in that cluster's region.
    let asked: BTreeSet<(String, String)> = cc
        .calls()
        .iter()
        .filter(|c| c.kind == NODEGROUP)
        .map(|c| {
            (
                c.region.clone(),
                c.resource_model.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
}

#[tokio::test]
async fn a_failed_cluster_listing_fails_the_nodegroups_scope_there_and_withholds_their_deletes() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: Some("eu-west-1".into()),
        kind: Some(CLUSTER.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "not authorized to perform eks:ListClusters".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let specs = specs_of(&nodegroups_from_clusters());
    let (report, items) = run(&source, &request(specs, Regions::Enabled)).await;
    let nodegroups: Vec<&Listing> = report
        .listings
        .iter()
        .filter(|l| l.kind == NODEGROUP)
        .collect();
    let failed: Vec<&&Listing> = nodegroups.iter().filter(|l| l.error.is_some()).collect();
    assert_eq!(failed.len(), 1, "{nodegroups:?}");
    assert_eq!(failed[0].region, "eu-west-1");
    let error = failed[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with("ParentListingIncomplete")
            && error.contains("AWS::EKS::Cluster listing in eu-west-1 failed")
            && error.contains("AccessDeniedException"),
        "{error}"
    );
    // No nodegroup listing was even tried there; blue's still were.
    assert!(
        !cc.calls()
            .iter()
            .any(|c| c.kind == NODEGROUP && c.region == "eu-west-1")
    );
    assert_eq!(items.iter().filter(|i| i.kind == NODEGROUP).count(), 2);
    let plan = plan_for(&report, &items, &[NODEGROUP]);
    let withheld = plan
        .withheld
        .iter()
        .find(|w| w.identifier == "aws_eks_nodegroup-gone")
        .expect("the gone nodegroup is withheld");
    assert_eq!(withheld.reason, Reason::ScopeFailed);
    assert!(
        withheld
            .detail
            .contains("AWS::EKS::Cluster listing in eu-west-1 failed"),
        "{}",
        withheld.detail
    );
}

#[tokio::test]
async fn a_snapshot_replays_derived_listings_as_the_live_run_made_them() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_clusters(&cc);
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: Some("eu-west-1".into()),
        kind: Some(CLUSTER.into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "denied".into(),
        },
    });
    let source = hostile_source(&sts, &cc).await;
    let specs = request(specs_of(&nodegroups_from_clusters()), Regions::Enabled);
    let (report, items) = run(&source, &specs).await;

    let dir = tempfile::tempdir().expect("tempdir");
    tidemark::adapters::snapshot::write_snapshot(dir.path(), &report, &items, "now")
        .expect("snapshot written");
    let replay = tidemark::adapters::snapshot::SnapshotSource::new(dir.path(), Regions::Enabled);
    let (replayed_report, replayed) = run_source(&replay, &specs).await;
    let mut recorded = report.listings.clone();
    let mut listings = replayed_report.listings.clone();
    recorded.sort();
    listings.sort();
    assert_eq!(listings, recorded);
    let key = |items: &[RawItem]| -> BTreeSet<(String, Option<String>)> {
        items
            .iter()
            .map(|i| (i.identifier.clone(), i.model.clone()))
            .collect()
    };
    assert_eq!(key(&replayed), key(&items));
}

const REPOSITORY: &str = "AWS::ECR::Repository";

#[tokio::test]
async fn a_type_missing_in_a_region_is_an_empty_listing_when_nothing_owned_may_come_from_there() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(HOSTILE, &["eu-west-1", "us-east-1"]);
    cc.add(HOSTILE, "us-east-1", REPOSITORY, "repo-1", json!({}));
    cc.type_missing_in("eu-west-1", REPOSITORY);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![kind(REPOSITORY)], Regions::Enabled)).await;
    let missing = report
        .listings
        .iter()
        .find(|l| l.region == "eu-west-1")
        .expect("the eu-west-1 listing");
    assert!(missing.unavailable, "{missing:?}");
    assert!(
        missing
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("TypeNotFoundException"),
        "{missing:?}"
    );
    assert_eq!(items.len(), 1);
    // Every owned repository is still listed: the missing region withholds nothing and is no
    // failed scope, so the run is complete.
    let plan = plan_owning(&report, &items, &[REPOSITORY], &[]);
    assert!(plan.scopes.is_empty(), "{:?}", plan.scopes);
    assert!(plan.withheld.is_empty(), "{:?}", plan.withheld);
    assert!(!plan.is_partial());
    // Asked once per region and run, whatever the number of accounts.
    let asked = cc
        .calls()
        .iter()
        .filter(|c| c.region == "eu-west-1" && c.kind == REPOSITORY)
        .count();
    assert_eq!(asked, 1);

    // A snapshot records the absence, and its replay decides the same.
    let dir = tempfile::tempdir().expect("tempdir");
    tidemark::adapters::snapshot::write_snapshot(dir.path(), &report, &items, "now")
        .expect("snapshot written");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert!(
        manifest["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .any(|s| s["region"] == "eu-west-1" && s["status"] == "unavailable"),
        "{manifest:#}"
    );
    let replay = tidemark::adapters::snapshot::SnapshotSource::new(dir.path(), Regions::Enabled);
    let specs = request(vec![kind(REPOSITORY)], Regions::Enabled);
    let (replayed, _) = run_source(&replay, &specs).await;
    let mut live = report.listings.clone();
    let mut again = replayed.listings.clone();
    live.sort();
    again.sort();
    assert_eq!(again, live);
}

#[tokio::test]
async fn a_type_missing_in_a_region_withholds_the_deletes_of_what_may_have_come_from_there() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(HOSTILE, &["eu-west-1", "us-east-1"]);
    cc.add(HOSTILE, "us-east-1", REPOSITORY, "repo-1", json!({}));
    cc.add(HOSTILE, "us-east-1", QUEUE, "queue-1", json!({}));
    cc.type_missing_in("eu-west-1", REPOSITORY);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(REPOSITORY), kind(QUEUE)], Regions::Enabled),
    )
    .await;
    // An owned repository is no longer listed: it may have been eu-west-1's, so it stays.
    let plan = plan_owning(&report, &items, &[REPOSITORY, QUEUE], &[REPOSITORY, QUEUE]);
    let withheld = plan
        .withheld
        .iter()
        .find(|w| w.identifier == "aws_ecr_repository-gone")
        .expect("withheld");
    assert_eq!(withheld.reason, Reason::ScopeFailed);
    assert!(
        withheld.detail.contains("eu-west-1") && withheld.detail.contains("does not exist"),
        "{}",
        withheld.detail
    );
    let lines: Vec<(&str, &str)> = plan
        .scopes
        .iter()
        .map(|s| (s.region.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(lines, vec![("eu-west-1", REPOSITORY)]);
    assert!(plan.is_partial());
    // The queue, whose listing is complete everywhere, is deleted as before.
    assert!(
        plan.changes
            .iter()
            .any(|c| c.action == Action::Delete && c.identifier == "aws_sqs_queue-gone")
    );
}

#[tokio::test]
async fn a_queue_listing_that_stops_at_the_handlers_cap_without_a_token_withholds_its_deletes() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    // 1,001 queues: the handler returns the first 1,000 and no NextToken.
    add_plain(&cc, QUEUE, 1001);
    add_plain(&cc, TOPIC, 2);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(QUEUE), kind(TOPIC)], list_of(&["us-east-1"])),
    )
    .await;
    assert_eq!(items.iter().filter(|i| i.kind == QUEUE).count(), 1000);
    let plan = plan_for(&report, &items, &[QUEUE, TOPIC]);
    assert_failed_scope(
        &report,
        &plan,
        QUEUE,
        &["PossiblyTruncated", "1000", "ocean#1453"],
    );
    assert_complete_scope(&report, &plan, TOPIC);
    // The queues that were listed are still created and updated.
    assert_eq!(
        plan.changes
            .iter()
            .filter(|c| c.blueprint == "aws_sqs_queue" && c.action != Action::Delete)
            .count(),
        0,
        "all listed queues are owned and unchanged"
    );
}

#[tokio::test]
async fn a_queue_listing_below_the_cap_is_complete() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_plain(&cc, QUEUE, 999);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(QUEUE)], list_of(&["us-east-1"])),
    )
    .await;
    assert_eq!(items.len(), 999);
    let plan = plan_for(&report, &items, &[QUEUE]);
    assert_complete_scope(&report, &plan, QUEUE);
}

/// The kinds the default mappings read with GetResource before issue 14, for the comparison in
/// BENCHMARKS.md.
const GET_BEFORE: [&str; 8] = [
    "AWS::S3::Bucket",
    "AWS::ECS::Cluster",
    "AWS::ECS::Service",
    "AWS::EKS::Cluster",
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::KMS::Key",
];

/// The listing benchmark of the default mappings (bench/aws/run.sh, figures in BENCHMARKS.md):
/// 20 accounts × 3 regions, every default kind holding its fixture items (what AWS lists and
/// reads of them, `add_resource`), every stand-in call 50 ms. Lists with the defaults as they
/// are and with the GetResource choices they had before, and prints the requests and wall times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/aws/run.sh"]
async fn bench_listing_the_default_mappings_for_twenty_accounts() {
    const LATENCY: std::time::Duration = std::time::Duration::from_millis(50);
    let regions = ["eu-west-1", "us-east-1", "us-west-2"];
    let accounts: Vec<String> = (0..20)
        .map(|i| format!("{:012}", 200_000_000_000u64 + i))
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let defaults = std::fs::read_to_string(root.join("mappings/aws.yaml")).expect("aws.yaml");
    let specs: Vec<KindSpec> = specs_of(&defaults)
        .into_iter()
        .filter(|k| k.kind != "AWS::Account::Info")
        .collect();
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    let mut resources = 0usize;
    for spec in &specs {
        let dir = root
            .join("tests/fixtures/aws")
            .join(spec.kind.replace("::", "_"));
        let items: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(dir.join("input.json")).expect("fixture"),
        )
        .expect("fixture json");
        for account in &accounts {
            // A global kind holds its items once per account; buckets live in each region.
            let homes: &[&str] =
                if tidemark::core::model::is_global_kind(&spec.kind) && spec.kind != BUCKET {
                    &["us-east-1"]
                } else {
                    &regions
                };
            for region in homes {
                for item in &items {
                    let id = item["Identifier"].as_str().expect("identifier");
                    let id = if spec.kind == BUCKET {
                        format!("{id}-{account}-{region}")
                    } else {
                        id.to_string()
                    };
                    cc.add_resource(account, region, &spec.kind, &id, item["Properties"].clone());
                    resources += 1;
                }
            }
        }
    }
    sts.set_latency(LATENCY);
    cc.set_latency(LATENCY);
    let before: Vec<KindSpec> = specs
        .iter()
        .cloned()
        .map(|mut k| {
            k.use_get_resource_api = GET_BEFORE.contains(&k.kind.as_str());
            k
        })
        .collect();
    for (name, kinds) in [
        ("before (8 kinds read)", &before),
        ("now (15 kinds read)", &specs),
    ] {
        for rps in [1000.0, 10.0] {
            let mut times = Vec::new();
            let mut counts = (0, 0);
            for _ in 0..3 {
                let mut cfg = source_config();
                cfg.account_role_arns = Some(accounts.iter().map(|a| role(a)).collect());
                cfg.concurrency_accounts = 5;
                cfg.requests_per_second = rps;
                let source = standin_source(&sts, &cc, cfg).await;
                let calls_before = cc.calls().len();
                let start = std::time::Instant::now();
                let (report, items) =
                    run(&source, &request(kinds.clone(), list_of(&regions))).await;
                times.push(start.elapsed());
                assert!(report.listings.iter().all(|l| l.error.is_none()));
                assert_eq!(items.len(), resources);
                let calls = &cc.calls()[calls_before..];
                counts = (
                    calls
                        .iter()
                        .filter(|c| c.operation == "ListResources")
                        .count(),
                    calls
                        .iter()
                        .filter(|c| c.operation == "GetResource")
                        .count(),
                );
            }
            times.sort();
            println!(
                "BENCH defaults {name} requestsPerSecond={rps}: {} resources, {} ListResources + {} GetResource; min {:.3} s, median {:.3} s, max {:.3} s over {} runs",
                resources,
                counts.0,
                counts.1,
                times[0].as_secs_f64(),
                times[times.len() / 2].as_secs_f64(),
                times[times.len() - 1].as_secs_f64(),
                times.len()
            );
        }
    }
}
