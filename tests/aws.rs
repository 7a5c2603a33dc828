//! The AWS source through the real SDK clients: moto server for STS and Organizations, our STS
//! stand-in where enforcement or recording is needed, and our Cloud Control stand-in.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use serde_json::json;
use std::collections::BTreeMap;

use tidemark::adapters::Source;
use tidemark::adapters::aws::{AwsConfig, AwsSource, BaseAws, ServiceEndpoints, WebIdentityBase};
use tidemark::core::mapping::Producible;
use tidemark::core::model::{
    Desired, Entity, KindSpec, Origin, OwnedEntity, RawItem, RegionPolicy, WriteOptions,
};
use tidemark::core::reconcile::plan::{Action, MassDelete, Plan, PlanInput, Reason, plan};
use tidemark::core::report::{
    AccountReport, DiscoveryStatus, ListRequest, Listing, Regions, SourceReport,
};
use tidemark::core::secret::Secret;

use support::aws_stand_ins::source_config;
use support::cloudcontrol::{CloudControl, Effect, Fault, Keys};
use support::moto::Moto;
use support::sts::StsStandIn;

/// moto's default account: static keys it does not know belong here.
const MOTO_ACCOUNT: &str = "123456789012";
const BASE_KEY: &str = "AKIATIDEMARKTEST0001";

async fn sdk_config(endpoint: &str) -> SdkConfig {
    support::aws_stand_ins::sdk_config(endpoint, BASE_KEY).await
}

fn kind(name: &str) -> KindSpec {
    KindSpec {
        kind: name.into(),
        region_policy: RegionPolicy::default(),
        use_get_resource_api: false,
        resource_model: None,
        models_from: None,
    }
}

fn request(kinds: Vec<KindSpec>, regions: Regions) -> ListRequest {
    ListRequest { kinds, regions }
}

fn list_of(regions: &[&str]) -> Regions {
    Regions::List(regions.iter().map(|r| r.to_string()).collect())
}

async fn run(source: &AwsSource, request: &ListRequest) -> (SourceReport, Vec<RawItem>) {
    let mut items = Vec::new();
    let mut sink = |page: Vec<RawItem>| items.extend(page);
    let report = source
        .list(request, &mut sink)
        .await
        .expect("the run completes");
    (report, items)
}

/// A source on moto (STS, Organizations) and the Cloud Control stand-in.
async fn moto_source(moto: &Moto, cc: &CloudControl, config: AwsConfig) -> AwsSource {
    let base = BaseAws {
        sdk_config: sdk_config(&moto.url).await,
        web_identity: None,
        endpoints: ServiceEndpoints {
            cloudcontrol: Some(cc.url.clone()),
            account: Some(cc.url.clone()),
            ..ServiceEndpoints::default()
        },
    };
    AwsSource::with_base(config, base).await.expect("source")
}

/// A source on our STS stand-in and the Cloud Control stand-in.
async fn standin_source(sts: &StsStandIn, cc: &CloudControl, config: AwsConfig) -> AwsSource {
    sts.register_base_key(BASE_KEY);
    let base = BaseAws {
        sdk_config: sdk_config(&sts.url).await,
        web_identity: None,
        endpoints: ServiceEndpoints {
            cloudcontrol: Some(cc.url.clone()),
            account: Some(cc.url.clone()),
            ..ServiceEndpoints::default()
        },
    };
    AwsSource::with_base(config, base).await.expect("source")
}

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/PortOceanReadRole")
}

fn ok_listings(report: &SourceReport) -> Vec<(String, String, String)> {
    report
        .listings
        .iter()
        .filter(|l| l.error.is_none())
        .map(|l| (l.account.clone(), l.region.clone(), l.kind.clone()))
        .collect()
}

fn account<'a>(report: &'a [AccountReport], id: &str) -> &'a AccountReport {
    report
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("account {id} not reported in {report:?}"))
}

fn orgs_client(sdk: &SdkConfig) -> aws_sdk_organizations::Client {
    aws_sdk_organizations::Client::new(sdk)
}

async fn create_account(orgs: &aws_sdk_organizations::Client, name: &str) -> String {
    let created = orgs
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .expect("create account");
    created
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string()
}

#[tokio::test]
async fn single_account_mode_lists_the_base_account_in_its_enabled_regions() {
    let moto = Moto::start().await;
    let cc = CloudControl::start(Keys::moto(&moto.url)).await;
    cc.set_regions(MOTO_ACCOUNT, &["us-west-2", "us-east-1", "eu-west-1"]);
    for i in 0..7 {
        cc.add(
            MOTO_ACCOUNT,
            "eu-west-1",
            "AWS::S3::Bucket",
            &format!("bucket-{i}"),
            json!({"BucketName": format!("bucket-{i}")}),
        );
    }
    cc.add(
        MOTO_ACCOUNT,
        "us-east-1",
        "AWS::EC2::Instance",
        "i-1",
        json!({"InstanceId": "i-1"}),
    );
    cc.add(
        MOTO_ACCOUNT,
        "us-west-2",
        "AWS::EC2::Instance",
        "i-2",
        json!({"InstanceId": "i-2"}),
    );
    let source = moto_source(&moto, &cc, source_config()).await;
    let mut ec2 = kind("AWS::EC2::Instance");
    ec2.region_policy.deny = vec!["us-west-2".into()];
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::S3::Bucket"), ec2], Regions::Enabled),
    )
    .await;

    assert_eq!(report.discovery.status, DiscoveryStatus::Ok);
    assert_eq!(report.accounts.len(), 1);
    let me = &report.accounts[0];
    assert_eq!(me.id, MOTO_ACCOUNT);
    assert!(me.assumed && me.error.is_none() && me.role_arn.is_none());
    assert_eq!(me.regions, vec!["eu-west-1", "us-east-1", "us-west-2"]);
    // The bucket listing happens once, from the partition's home region; EC2 is denied in
    // us-west-2.
    assert_eq!(
        ok_listings(&report),
        vec![
            (
                MOTO_ACCOUNT.into(),
                "eu-west-1".into(),
                "AWS::EC2::Instance".into()
            ),
            (
                MOTO_ACCOUNT.into(),
                "us-east-1".into(),
                "AWS::EC2::Instance".into()
            ),
            (
                MOTO_ACCOUNT.into(),
                "us-east-1".into(),
                "AWS::S3::Bucket".into()
            ),
        ]
    );
    assert_eq!(report.listings.len(), 3);
    let buckets: BTreeSet<&str> = items
        .iter()
        .filter(|i| i.kind == "AWS::S3::Bucket")
        .map(|i| i.identifier.as_str())
        .collect();
    assert_eq!(buckets.len(), 7, "every page of buckets arrived");
    let instance = items
        .iter()
        .find(|i| i.identifier == "i-1")
        .expect("i-1 listed");
    assert_eq!(instance.properties, json!({"InstanceId": "i-1"}));
    assert_eq!(instance.account_name.as_deref(), Some(MOTO_ACCOUNT));
    assert!(!items.iter().any(|i| i.identifier == "i-2"));
}

#[tokio::test]
async fn organizations_mode_pages_through_every_active_account_except_excluded_ones() {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url).await;
    let orgs = orgs_client(&sdk);
    orgs.create_organization()
        .send()
        .await
        .expect("organization");
    // More than one ListAccounts page (moto pages at 100).
    let mut members = Vec::new();
    for i in 0..102 {
        members.push(create_account(&orgs, &format!("member{i}")).await);
    }
    let suspended = members[0].clone();
    orgs.close_account()
        .account_id(&suspended)
        .send()
        .await
        .expect("close");
    let excluded = members[1].clone();
    let cc = CloudControl::start(Keys::moto(&moto.url)).await;
    for m in &members {
        cc.add(
            m,
            "us-east-1",
            "AWS::SNS::Topic",
            &format!("topic-of-{m}"),
            json!({"Owner": m}),
        );
    }
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role(MOTO_ACCOUNT));
    cfg.exclude = vec![excluded.clone()];
    let source = moto_source(&moto, &cc, cfg).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SNS::Topic")], list_of(&["us-east-1"])),
    )
    .await;

    assert_eq!(
        report.discovery.status,
        DiscoveryStatus::Ok,
        "{:?}",
        report.discovery
    );
    let ids: BTreeSet<&str> = report.accounts.iter().map(|a| a.id.as_str()).collect();
    let mut expected: BTreeSet<&str> = members[2..].iter().map(String::as_str).collect();
    expected.insert(MOTO_ACCOUNT);
    assert_eq!(
        ids, expected,
        "ACTIVE accounts, the management account included, minus excluded"
    );
    for a in &report.accounts {
        assert!(a.assumed, "{a:?}");
        assert_eq!(a.role_arn.as_deref(), Some(role(&a.id).as_str()));
        assert_eq!(a.status.as_deref(), Some("ACTIVE"));
    }
    let named = account(&report.accounts, &members[5]);
    assert_eq!(named.name.as_deref(), Some("member5"));
    assert_eq!(named.email.as_deref(), Some("member5@example.com"));
    // Two ListAccounts pages, each counted for the daemon's request metrics.
    let counts = source.take_requests();
    let list_accounts = counts
        .iter()
        .find(|c| c.service == "organizations" && c.operation == "ListAccounts")
        .unwrap_or_else(|| panic!("no ListAccounts count in {counts:?}"));
    assert_eq!((list_accounts.ok, list_accounts.failed), (2, 0));
    // Each member's items were listed with that member's own credentials.
    assert_eq!(items.len(), 100);
    for item in &items {
        assert_eq!(item.identifier, format!("topic-of-{}", item.account));
        assert_eq!(
            item.account_name.as_deref(),
            Some(
                format!(
                    "member{}",
                    members
                        .iter()
                        .position(|m| *m == item.account)
                        .unwrap_or(999)
                )
                .as_str()
            )
        );
    }
}

#[tokio::test]
async fn organizational_units_are_walked_with_their_children_only() {
    let moto = Moto::start().await;
    let sdk = sdk_config(&moto.url).await;
    let orgs = orgs_client(&sdk);
    orgs.create_organization()
        .send()
        .await
        .expect("organization");
    let root = orgs.list_roots().send().await.expect("roots").roots()[0]
        .id()
        .expect("root id")
        .to_string();
    let ou = |parent: String, name: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .expect("OU")
                .organizational_unit()
                .and_then(|o| o.id())
                .expect("OU id")
                .to_string()
        }
    };
    let prod = ou(root.clone(), "prod").await;
    let prod_eu = ou(prod.clone(), "prod-eu").await;
    let other = ou(root.clone(), "other").await;
    let move_to = |account: String, from: String, to: String| {
        let orgs = orgs.clone();
        async move {
            orgs.move_account()
                .account_id(account)
                .source_parent_id(from)
                .destination_parent_id(to)
                .send()
                .await
                .expect("move");
        }
    };
    let a1 = create_account(&orgs, "prod-app").await;
    move_to(a1.clone(), root.clone(), prod.clone()).await;
    let suspended = create_account(&orgs, "prod-old").await;
    move_to(suspended.clone(), root.clone(), prod.clone()).await;
    orgs.close_account()
        .account_id(&suspended)
        .send()
        .await
        .expect("close");
    // More than one ListAccountsForParent page (moto pages at 20).
    let mut eu = Vec::new();
    for i in 0..22 {
        let id = create_account(&orgs, &format!("prod-eu-{i}")).await;
        move_to(id.clone(), root.clone(), prod_eu.clone()).await;
        eu.push(id);
    }
    let excluded = eu[3].clone();
    let elsewhere = create_account(&orgs, "other-app").await;
    move_to(elsewhere.clone(), root.clone(), other.clone()).await;

    let cc = CloudControl::start(Keys::moto(&moto.url)).await;
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role(MOTO_ACCOUNT));
    cfg.organizational_units = vec![prod.clone()];
    cfg.exclude = vec![excluded.clone()];
    let source = moto_source(&moto, &cc, cfg).await;
    let (discovery, accounts) = source.accounts().await.expect("accounts");

    assert_eq!(discovery.status, DiscoveryStatus::Ok);
    let ids: BTreeSet<String> = accounts.iter().map(|a| a.id.clone()).collect();
    let mut expected: BTreeSet<String> = eu.iter().filter(|id| **id != excluded).cloned().collect();
    expected.insert(a1.clone());
    assert_eq!(ids, expected);
    assert!(!ids.contains(&elsewhere) && !ids.contains(MOTO_ACCOUNT) && !ids.contains(&suspended));
    // `accounts` looks the regions up without listing anything.
    assert!(
        accounts
            .iter()
            .all(|a| a.assumed && a.regions == vec!["us-east-1"])
    );
    assert!(cc.calls().iter().all(|c| c.operation != "ListResources"));
}

#[tokio::test]
async fn organizations_denied_falls_back_to_the_base_account_and_says_so() {
    let moto = Moto::start().await;
    let cc = CloudControl::start(Keys::moto(&moto.url)).await;
    cc.refuse_organizations("AccessDeniedException");
    cc.add(
        MOTO_ACCOUNT,
        "us-east-1",
        "AWS::SQS::Queue",
        "q1",
        json!({}),
    );
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role(MOTO_ACCOUNT));
    let base = BaseAws {
        sdk_config: sdk_config(&moto.url).await,
        web_identity: None,
        endpoints: ServiceEndpoints {
            organizations: Some(cc.url.clone()),
            cloudcontrol: Some(cc.url.clone()),
            account: Some(cc.url.clone()),
            ..ServiceEndpoints::default()
        },
    };
    let source = AwsSource::with_base(cfg, base).await.expect("source");
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"])),
    )
    .await;

    assert_eq!(report.discovery.status, DiscoveryStatus::Fallback);
    assert!(!report.discovery.is_complete());
    let error = report
        .discovery
        .error
        .clone()
        .expect("the fallback is explained");
    assert!(error.contains("AccessDeniedException"), "{error}");
    assert_eq!(report.accounts.len(), 1);
    assert_eq!(report.accounts[0].id, MOTO_ACCOUNT);
    assert!(
        report.accounts[0].role_arn.is_none(),
        "the base credentials are used"
    );
    assert_eq!(items.len(), 1);
}

#[tokio::test]
async fn an_empty_organization_answer_is_a_failed_discovery_not_proof_of_absence() {
    // moto answers ListAccounts with nothing when there is no organization, where AWS would refuse.
    let moto = Moto::start().await;
    let cc = CloudControl::start(Keys::moto(&moto.url)).await;
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role(MOTO_ACCOUNT));
    let source = moto_source(&moto, &cc, cfg).await;
    let (discovery, accounts) = source.accounts().await.expect("accounts");
    assert_eq!(discovery.status, DiscoveryStatus::Failed);
    assert!(discovery.error.unwrap_or_default().contains("no account"));
    assert!(accounts.is_empty());
}

#[tokio::test]
async fn explicit_list_sends_the_external_id_and_reports_a_denied_account_with_advice() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    sts.require_external_id("ext-4f2a9c");
    sts.deny_role(&role("444444444444"));
    cc.add(
        "222222222222",
        "us-east-1",
        "AWS::SQS::Queue",
        "q2",
        json!({}),
    );
    cc.add(
        "333333333333",
        "us-east-1",
        "AWS::SQS::Queue",
        "q3",
        json!({}),
    );
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![
        role("222222222222"),
        role("333333333333"),
        role("444444444444"),
    ]);
    cfg.external_id = Some(Secret::new("ext-4f2a9c"));
    let source = standin_source(&sts, &cc, cfg).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"])),
    )
    .await;

    assert_eq!(report.discovery.status, DiscoveryStatus::Ok);
    let ids: Vec<&str> = report.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec!["222222222222", "333333333333", "444444444444"]);
    let assume_calls: Vec<_> = sts
        .calls()
        .into_iter()
        .filter(|c| c.action == "AssumeRole")
        .collect();
    assert_eq!(assume_calls.len(), 3);
    for call in &assume_calls {
        assert_eq!(call.external_id.as_deref(), Some("ext-4f2a9c"));
        let account = call
            .role_arn
            .as_deref()
            .unwrap_or_default()
            .split(':')
            .nth(4)
            .unwrap_or_default();
        assert_eq!(
            call.session_name.as_deref(),
            Some(format!("tidemark-{account}").as_str())
        );
    }
    let denied = account(&report.accounts, "444444444444");
    assert!(!denied.assumed);
    let error = denied.error.clone().expect("the denial is reported");
    for advice in [
        "AccessDenied",
        "role ARN",
        "trust policy",
        "externalId",
        "sts:AssumeRole permission",
    ] {
        assert!(error.contains(advice), "{advice:?} missing from {error}");
    }
    assert!(!report.listings.iter().any(|l| l.account == "444444444444"));
    let mut names = BTreeSet::new();
    for item in &items {
        names.insert((
            item.account.clone(),
            item.identifier.clone(),
            item.account_name.clone(),
        ));
    }
    assert_eq!(
        names,
        BTreeSet::from([
            (
                "222222222222".to_string(),
                "q2".to_string(),
                Some("222222222222".to_string())
            ),
            (
                "333333333333".to_string(),
                "q3".to_string(),
                Some("333333333333".to_string())
            ),
        ])
    );
    // The ExternalId appears nowhere tidemark prints.
    let printed = format!(
        "{report:?} {source:?} {}",
        serde_json::to_string(&report).expect("json")
    );
    assert!(!printed.contains("ext-4f2a9c"), "{printed}");

    // `accounts` shows the same verdicts without listing.
    let (_, accounts) = source.accounts().await.expect("accounts");
    assert!(!account(&accounts, "444444444444").assumed);
    assert!(account(&accounts, "222222222222").assumed);
}

#[tokio::test]
async fn a_wrong_external_id_makes_every_account_unassumable() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    sts.require_external_id("the-right-one");
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role("222222222222")]);
    cfg.external_id = Some(Secret::new("a-wrong-one"));
    let source = standin_source(&sts, &cc, cfg).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"])),
    )
    .await;
    assert!(items.is_empty());
    let a = account(&report.accounts, "222222222222");
    assert!(!a.assumed);
    assert!(
        a.error
            .as_deref()
            .unwrap_or_default()
            .contains("externalId")
    );
    assert!(!format!("{report:?}").contains("a-wrong-one"));
}

#[tokio::test]
async fn web_identity_reads_the_token_file_on_every_call() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    // Short credentials, so that the second run must assume again.
    sts.set_lifetime(Duration::from_secs(1));
    cc.add(
        "222222222222",
        "us-east-1",
        "AWS::SQS::Queue",
        "q2",
        json!({}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-one\n").expect("token");
    let base = BaseAws {
        sdk_config: sdk_config(&sts.url).await,
        web_identity: Some(WebIdentityBase {
            token_file: token_file.clone(),
            role_arn: "arn:aws:iam::111111111111:role/irsa".into(),
        }),
        endpoints: ServiceEndpoints {
            cloudcontrol: Some(cc.url.clone()),
            account: Some(cc.url.clone()),
            ..ServiceEndpoints::default()
        },
    };
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role("222222222222")]);
    cfg.external_id = Some(Secret::new("ignored-for-web-identity"));
    let source = AwsSource::with_base(cfg, base).await.expect("source");
    let req = request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"]));
    let (first, items) = run(&source, &req).await;
    assert!(account(&first.accounts, "222222222222").assumed);
    assert_eq!(items.len(), 1);

    std::fs::write(&token_file, "token-two\n").expect("token");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (second, items) = run(&source, &req).await;
    assert!(account(&second.accounts, "222222222222").assumed);
    assert_eq!(items.len(), 1);

    let member_calls: Vec<_> = sts
        .calls()
        .into_iter()
        .filter(|c| c.role_arn.as_deref() == Some(role("222222222222").as_str()))
        .collect();
    assert!(member_calls.len() >= 2, "{member_calls:?}");
    assert!(
        member_calls
            .iter()
            .all(|c| c.action == "AssumeRoleWithWebIdentity" && c.external_id.is_none())
    );
    assert_eq!(
        member_calls[0].web_identity_token.as_deref(),
        Some("token-one")
    );
    assert_eq!(
        member_calls
            .last()
            .and_then(|c| c.web_identity_token.as_deref()),
        Some("token-two")
    );
    assert!(
        sts.calls()
            .iter()
            .any(|c| c.role_arn.as_deref() == Some("arn:aws:iam::111111111111:role/irsa"))
    );
}

#[tokio::test]
async fn failed_throttled_and_unsupported_listings_are_reported_per_scope() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    for acct in ["222222222222", "333333333333"] {
        for i in 0..5 {
            cc.add(
                acct,
                "us-east-1",
                "AWS::Lambda::Function",
                &format!("f{i}"),
                json!({"FunctionName": format!("f{i}")}),
            );
            cc.add(
                acct,
                "us-east-1",
                "AWS::ECS::Cluster",
                &format!("c{i}"),
                json!({}),
            );
        }
    }
    cc.add_raw(
        "222222222222",
        "us-east-1",
        "AWS::SNS::Topic",
        "t1",
        "{\"TopicName\":",
        json!({}),
    );
    cc.add_raw(
        "222222222222",
        "us-east-1",
        "AWS::Kinesis::Stream",
        "s1",
        "{\"Name\":\"s1\"}",
        json!({"Name": "s1", "ShardCount": 2}),
    );
    cc.add(
        "222222222222",
        "us-east-1",
        "AWS::EKS::Cluster",
        "c1",
        json!({"Name": "c1"}),
    );
    cc.add(
        "222222222222",
        "us-east-1",
        "AWS::EKS::Nodegroup",
        "ng1",
        json!({"ClusterName": "c1"}),
    );
    cc.add_raw(
        "222222222222",
        "us-east-1",
        "AWS::Kinesis::Stream",
        "s-gone",
        "{}",
        serde_json::Value::Null,
    );
    cc.inject(Fault {
        account: Some("222222222222".into()),
        region: None,
        kind: Some("AWS::ECS::Cluster".into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "not authorized to list ECS".into(),
        },
    });
    cc.inject(Fault {
        account: None,
        region: None,
        kind: Some("AWS::Lambda::Function".into()),
        effect: Effect::Throttle { times: 4 },
    });
    cc.inject(Fault {
        account: None,
        region: None,
        kind: Some("AWS::Made::Up".into()),
        effect: Effect::Error {
            code: "TypeNotFoundException".into(),
            message: "no such type".into(),
        },
    });
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role("222222222222"), role("333333333333")]);
    // One account at a time, so that the second sees what the first learnt.
    cfg.concurrency_accounts = 1;
    let source = standin_source(&sts, &cc, cfg).await;
    let mut kinesis = kind("AWS::Kinesis::Stream");
    kinesis.use_get_resource_api = true;
    let mut nodegroup = kind("AWS::EKS::Nodegroup");
    nodegroup.resource_model = Some(json!({"ClusterName": "c1"}));
    let kinds = vec![
        kind("AWS::Lambda::Function"),
        kind("AWS::ECS::Cluster"),
        kind("AWS::Made::Up"),
        kind("AWS::SNS::Topic"),
        kinesis,
        nodegroup,
    ];
    let (report, items) = run(&source, &request(kinds, list_of(&["us-east-1"]))).await;

    let status = |acct: &str, kind: &str| -> Listing {
        report
            .listings
            .iter()
            .find(|l| l.account == acct && l.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no listing {acct} {kind}"))
    };
    // Denied: that scope fails with the AWS code and message; the other account's is fine.
    assert_eq!(
        status("222222222222", "AWS::ECS::Cluster").error.as_deref(),
        Some("AccessDeniedException: not authorized to list ECS")
    );
    assert_eq!(status("333333333333", "AWS::ECS::Cluster").error, None);
    // Throttled, then recovered: complete, every item.
    assert_eq!(status("222222222222", "AWS::Lambda::Function").error, None);
    let functions = items
        .iter()
        .filter(|i| i.kind == "AWS::Lambda::Function")
        .count();
    assert_eq!(functions, 10);
    // Unknown type: failed in both accounts, asked only once.
    assert!(
        status("222222222222", "AWS::Made::Up")
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("TypeNotFoundException")
    );
    assert!(
        status("333333333333", "AWS::Made::Up")
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("TypeNotFoundException")
    );
    assert_eq!(
        cc.calls()
            .iter()
            .filter(|c| c.kind == "AWS::Made::Up")
            .count(),
        1
    );
    // Unparseable Properties: the scope fails naming the item.
    let topic = status("222222222222", "AWS::SNS::Topic")
        .error
        .unwrap_or_default();
    assert!(
        topic.starts_with("InvalidProperties") && topic.contains("t1"),
        "{topic}"
    );
    // GetResource gives the full model.
    let stream = items.iter().find(|i| i.identifier == "s1").expect("stream");
    assert_eq!(stream.properties, json!({"Name": "s1", "ShardCount": 2}));
    assert_eq!(
        cc.calls()
            .iter()
            .filter(|c| c.operation == "GetResource")
            .count(),
        2
    );
    // One deleted between the list and the get is gone, not a failure.
    assert!(!items.iter().any(|i| i.identifier == "s-gone"));
    assert_eq!(status("222222222222", "AWS::Kinesis::Stream").error, None);
    // The resource model is passed through as a JSON string.
    let model = cc
        .calls()
        .into_iter()
        .find(|c| c.kind == "AWS::EKS::Nodegroup")
        .and_then(|c| c.resource_model);
    assert_eq!(
        model.map(|m| serde_json::from_str::<serde_json::Value>(&m).expect("json")),
        Some(json!({"ClusterName": "c1"}))
    );
}

#[tokio::test]
async fn a_failed_region_lookup_is_reported_for_the_account() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions("222222222222", &["eu-west-1", "us-east-1", "eu-central-1"]);
    cc.inject(Fault {
        account: Some("333333333333".into()),
        region: None,
        kind: None,
        effect: Effect::DenyRegions,
    });
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role("222222222222"), role("333333333333")]);
    let source = standin_source(&sts, &cc, cfg).await;
    let (report, _) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], Regions::Enabled),
    )
    .await;
    let ok = account(&report.accounts, "222222222222");
    assert_eq!(
        ok.regions,
        vec!["eu-central-1", "eu-west-1", "us-east-1"],
        "all pages of ListRegions"
    );
    let failed = account(&report.accounts, "333333333333");
    assert!(failed.assumed);
    assert!(
        failed
            .regions_error
            .as_deref()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{failed:?}"
    );
    assert!(!report.listings.iter().any(|l| l.account == "333333333333"));
    assert_eq!(
        report
            .listings
            .iter()
            .filter(|l| l.account == "222222222222")
            .count(),
        3
    );
}

#[tokio::test]
async fn an_empty_region_answer_fails_the_account_instead_of_proving_its_resources_gone() {
    // Every account has enabled regions; an answer without any is broken, not an empty account.
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    cc.set_regions(HOSTILE, &[]);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], Regions::Enabled),
    )
    .await;
    let failed = account(&report.accounts, HOSTILE);
    assert!(failed.assumed);
    let error = failed.regions_error.clone().unwrap_or_default();
    assert!(
        error.contains("ListRegions") && error.contains("no region"),
        "{failed:?}"
    );
    let plan = plan_for(&report, &items, &["AWS::SQS::Queue"]);
    assert!(
        !plan.changes.iter().any(|c| c.action == Action::Delete),
        "{:?}",
        plan.changes
    );
    let withheld: Vec<(&str, Reason)> = plan
        .withheld
        .iter()
        .map(|w| (w.identifier.as_str(), w.reason))
        .collect();
    assert_eq!(
        withheld,
        vec![("aws_sqs_queue-gone", Reason::RegionsFailed)]
    );
}

#[tokio::test]
async fn a_sync_that_outlives_its_credentials_still_completes() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    sts.set_lifetime(Duration::from_secs(2));
    // 8 pages at 400 ms each: about 3.2 s of listing on 2-second credentials.
    cc.set_latency(Duration::from_millis(400));
    for i in 0..24 {
        cc.add(
            "222222222222",
            "us-east-1",
            "AWS::SQS::Queue",
            &format!("q{i}"),
            json!({}),
        );
    }
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role("222222222222")]);
    let source = standin_source(&sts, &cc, cfg).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"])),
    )
    .await;
    assert_eq!(report.listings.len(), 1);
    assert_eq!(report.listings[0].error, None);
    assert_eq!(items.len(), 24);
    let assumed = sts
        .calls()
        .iter()
        .filter(|c| c.action == "AssumeRole")
        .count();
    assert!(
        assumed >= 2,
        "the credentials were refreshed ({assumed} AssumeRole calls)"
    );
    assert_eq!(
        cc.rejected_expired(),
        0,
        "refreshed before expiry, never after"
    );
}

#[tokio::test]
async fn an_unassumable_organizations_role_fails_discovery_with_advice() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    sts.deny_role(&role("999999999999"));
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role("999999999999"));
    let source = standin_source(&sts, &cc, cfg).await;
    let (report, items) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"])),
    )
    .await;
    assert_eq!(report.discovery.status, DiscoveryStatus::Failed);
    assert!(
        report
            .discovery
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("trust policy")
    );
    let management = account(&report.accounts, "999999999999");
    assert!(!management.assumed);
    assert!(
        management
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("AccessDenied")
    );
    assert!(items.is_empty() && report.listings.is_empty());
}

#[tokio::test]
async fn a_missing_region_is_a_clear_error() {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                BASE_KEY,
                "base-secret",
                None,
                None,
                "test",
            )),
        )
        .build();
    let base = BaseAws {
        sdk_config: sdk,
        web_identity: None,
        endpoints: ServiceEndpoints::default(),
    };
    let err = AwsSource::with_base(source_config(), base)
        .await
        .expect_err("no region");
    assert!(err.to_string().contains("AWS_REGION"), "{err}");
}

// Hostile answers (issue 6): each fails its item or its scope with a message that names the
// account, region, kind and item, never panics, and never lets the plan delete what that scope
// could have listed.

const HOSTILE: &str = "222222222222";

/// `n` ordinary resources of `kind`, so that every hostile scope also has items that map.
fn add_plain(cc: &CloudControl, kind: &str, n: usize) {
    for i in 0..n {
        cc.add(
            HOSTILE,
            "us-east-1",
            kind,
            &format!("{}-{i}", blueprint_of(kind)),
            json!({"Index": i}),
        );
    }
}

fn blueprint_of(kind: &str) -> String {
    kind.replace("::", "_").to_lowercase()
}

/// The plan for what was listed, over a catalog that owns every listed item and one more entity
/// per kind (`<blueprint>-gone`) that the listing no longer returned.
fn plan_for(report: &SourceReport, items: &[RawItem], kinds: &[&str]) -> Plan {
    plan_owning(report, items, kinds, kinds)
}

/// [`plan_for`] where only the kinds in `gone` have an owned entity no longer listed; `kinds`
/// are those the mappings map.
fn plan_owning(report: &SourceReport, items: &[RawItem], kinds: &[&str], gone: &[&str]) -> Plan {
    let desired: Vec<Desired> = items
        .iter()
        .map(|i| {
            let mut entity = Entity::new(blueprint_of(&i.kind), &i.identifier);
            entity.title = Some(json!(i.identifier));
            Desired {
                entity,
                origin: Origin {
                    account: i.account.clone(),
                    kind: i.kind.clone(),
                    region: i.region.clone(),
                    item: i.identifier.clone(),
                },
                write: WriteOptions::default(),
            }
        })
        .collect();
    let mut owned: Vec<OwnedEntity> = desired
        .iter()
        .map(|d| OwnedEntity {
            entity: d.entity.clone(),
            account: Some(d.origin.account.clone()),
            kind: Some(d.origin.kind.clone()),
            placeholder: false,
        })
        .collect();
    for kind in gone {
        let mut gone = Entity::new(blueprint_of(kind), format!("{}-gone", blueprint_of(kind)));
        gone.title = Some(json!("gone"));
        owned.push(OwnedEntity {
            entity: gone,
            account: Some(HOSTILE.into()),
            kind: Some(kind.to_string()),
            placeholder: false,
        });
    }
    let producible: BTreeMap<String, Producible> = kinds
        .iter()
        .map(|k| (k.to_string(), Producible::Only([blueprint_of(k)].into())))
        .collect();
    plan(PlanInput {
        integration: "hostile",
        adopt_prefixes: &[],
        adopt_all: false,
        allow_mass_delete: MassDelete::None,
        catalog: "test".into(),
        config_hash: "test".into(),
        desired: &desired,
        owned,
        foreign: Vec::new(),
        foreign_references: Vec::new(),
        report,
        mapping_errors: Vec::new(),
        warnings: Vec::new(),
        producible,
        threshold: 1.0,
        desired_blueprints: &[],
        catalog_blueprints: &[],
    })
}

/// The one listing of `kind` in the hostile account.
fn listing_of(report: &SourceReport, kind: &str) -> Listing {
    let found: Vec<&Listing> = report
        .listings
        .iter()
        .filter(|l| l.account == HOSTILE && l.kind == kind)
        .collect();
    assert_eq!(found.len(), 1, "{kind}: {:?}", report.listings);
    found[0].clone()
}

/// A failed scope: its error names `parts`, its gone entity is withheld (`scope_failed`, with
/// the region in the reason), and the plan deletes nothing of its blueprint.
fn assert_failed_scope(report: &SourceReport, plan: &Plan, kind: &str, parts: &[&str]) {
    let listing = listing_of(report, kind);
    assert_eq!(listing.region, "us-east-1");
    let error = listing
        .error
        .unwrap_or_else(|| panic!("{kind} should have failed"));
    for part in parts {
        assert!(
            error.contains(part),
            "{kind}: {error:?} should name {part:?}"
        );
    }
    let blueprint = blueprint_of(kind);
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.action == Action::Delete && c.blueprint == blueprint),
        "{kind}: no delete of {blueprint}: {:?}",
        plan.changes
    );
    let gone = format!("{blueprint}-gone");
    let withheld = plan
        .withheld
        .iter()
        .find(|w| w.identifier == gone)
        .unwrap_or_else(|| panic!("{gone} withheld: {:?}", plan.withheld));
    assert_eq!(withheld.reason, Reason::ScopeFailed);
    assert_eq!(withheld.account.as_deref(), Some(HOSTILE));
    assert!(
        withheld.detail.contains(kind) && withheld.detail.contains("us-east-1"),
        "{}",
        withheld.detail
    );
    let line = plan
        .scopes
        .iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("{kind} in the plan's scopes"));
    assert_eq!(
        (line.account.as_str(), line.region.as_str()),
        (HOSTILE, "us-east-1")
    );
}

/// A complete scope: the control, whose gone entity is deleted.
fn assert_complete_scope(report: &SourceReport, plan: &Plan, kind: &str) {
    assert_eq!(listing_of(report, kind).error, None, "{kind}");
    let gone = format!("{}-gone", blueprint_of(kind));
    assert!(
        plan.changes
            .iter()
            .any(|c| c.action == Action::Delete && c.identifier == gone),
        "{gone} is deleted: {:?}",
        plan.changes
    );
}

async fn hostile_source(sts: &StsStandIn, cc: &CloudControl) -> AwsSource {
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role(HOSTILE)]);
    cfg.requests_per_second = 1_000_000.0;
    standin_source(sts, cc, cfg).await
}

#[tokio::test]
async fn hostile_properties_fail_their_item_and_scope_but_never_panic_or_delete() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const INVALID: &str = "AWS::SNS::Topic";
    const DEEP: &str = "AWS::SQS::Queue";
    const CONTROL: &str = "AWS::ECS::Cluster";
    const SURROGATE: &str = "AWS::Kinesis::Stream";
    const LARGE: &str = "AWS::Logs::LogGroup";
    const UNICODE: &str = "AWS::Lambda::Function";
    let kinds = [INVALID, DEEP, CONTROL, SURROGATE, LARGE, UNICODE];
    for kind in kinds {
        add_plain(&cc, kind, 4);
    }
    // Not JSON: cut off mid-document.
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        INVALID,
        "t-bad",
        "{\"TopicName\":",
        json!({}),
    );
    // 200 levels of nesting: more than a parser should follow on the stack.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    cc.add_raw(HOSTILE, "us-east-1", DEEP, "q-deep", &deep, json!({}));
    // A raw control character inside a string is not JSON.
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        CONTROL,
        "c-ctl",
        "{\"Name\":\"a\u{1}b\nc\"}",
        json!({}),
    );
    // A lone surrogate escape is not a character.
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        SURROGATE,
        "s-lone",
        r#"{"Name":"\ud800"}"#,
        json!({}),
    );
    // 10 MB of properties: valid, kept whole.
    let large = json!({"Blob": "x".repeat(10 * 1024 * 1024), "Tail": "end"});
    cc.add(HOSTILE, "us-east-1", LARGE, "l-large", large.clone());
    // Unicode and escaped control characters: valid JSON, kept exactly, in identifier and values.
    let unicode_id = "fn-ünï-😀-ش-\u{301}";
    let unicode = json!({
        "Name": "żółw 🐢 עברית \u{202e}rtl\u{202c} e\u{301}",
        "Controls": "nul\u{0}bell\u{7}esc\u{1b}[31mdel\u{7f}",
        "Pair": "😀",
    });
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        UNICODE,
        unicode_id,
        r#"{"Name":"żółw 🐢 עברית \u202ertl\u202c e\u0301","Controls":"nul\u0000bell\u0007esc\u001b[31mdel\u007f","Pair":"\ud83d\ude00"}"#,
        unicode.clone(),
    );
    // After the hostile items, more pages: a bad item does not stop the listing.
    for kind in [INVALID, DEEP, CONTROL, SURROGATE] {
        cc.add(
            HOSTILE,
            "us-east-1",
            kind,
            &format!("{}-after", blueprint_of(kind)),
            json!({}),
        );
    }

    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(
            kinds.iter().map(|k| kind(k)).collect(),
            list_of(&["us-east-1"]),
        ),
    )
    .await;
    let plan = plan_for(&report, &items, &kinds);

    assert_failed_scope(
        &report,
        &plan,
        INVALID,
        &["InvalidProperties", "t-bad", "not valid JSON"],
    );
    assert_failed_scope(
        &report,
        &plan,
        DEEP,
        &["InvalidProperties", "q-deep", "nest"],
    );
    assert_failed_scope(
        &report,
        &plan,
        CONTROL,
        &["InvalidProperties", "c-ctl", "control character"],
    );
    assert_failed_scope(
        &report,
        &plan,
        SURROGATE,
        &["InvalidProperties", "s-lone", "not valid JSON"],
    );
    // Only the hostile items are missing: every other item of those scopes was listed.
    for kind in [INVALID, DEEP, CONTROL, SURROGATE] {
        let listed = items.iter().filter(|i| i.kind == kind).count();
        assert_eq!(listed, 5, "{kind}: every item but the hostile one");
    }

    assert_complete_scope(&report, &plan, LARGE);
    let large_item = items
        .iter()
        .find(|i| i.identifier == "l-large")
        .expect("large item");
    assert_eq!(large_item.properties, large);
    assert_complete_scope(&report, &plan, UNICODE);
    let unicode_item = items
        .iter()
        .find(|i| i.identifier == unicode_id)
        .expect("unicode item");
    assert_eq!(unicode_item.properties, unicode);
    // In Cloud Control's key order too, which mappings see (`==` on objects ignores order).
    let keys: Vec<&str> = unicode_item
        .properties
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["Name", "Controls", "Pair"]);
    assert!(plan.is_partial());
}

#[tokio::test]
async fn an_html_page_instead_of_json_fails_the_scope_with_a_clear_message() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    // A gateway error is transient: retried, then the scope fails. A 4xx page will not change.
    const GATEWAY: &str = "AWS::SQS::Queue";
    const MOTO: &str = "AWS::SNS::Topic";
    const FORBIDDEN: &str = "AWS::ECS::Cluster";
    const OK_PAGE: &str = "AWS::Kinesis::Stream";
    const FINE: &str = "AWS::Lambda::Function";
    let kinds = [GATEWAY, MOTO, FORBIDDEN, OK_PAGE, FINE];
    for (kind, status) in [
        (GATEWAY, 502),
        (MOTO, 500),
        (FORBIDDEN, 403),
        (OK_PAGE, 200),
    ] {
        cc.inject(Fault {
            account: Some(HOSTILE.into()),
            region: None,
            kind: Some(kind.into()),
            effect: Effect::Html { status },
        });
    }
    for kind in kinds {
        add_plain(&cc, kind, 2);
    }
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(
            kinds.iter().map(|k| kind(k)).collect(),
            list_of(&["us-east-1"]),
        ),
    )
    .await;
    let plan = plan_for(&report, &items, &kinds);
    assert_failed_scope(
        &report,
        &plan,
        GATEWAY,
        &[
            "HTTP 502",
            "text/html",
            "not JSON",
            "500 Internal Server Error",
        ],
    );
    assert_failed_scope(
        &report,
        &plan,
        MOTO,
        &["HTTP 500", "text/html", "gave up after"],
    );
    assert_failed_scope(&report, &plan, FORBIDDEN, &["HTTP 403", "text/html"]);
    assert_failed_scope(&report, &plan, OK_PAGE, &["HTTP 200", "text/html"]);
    assert_complete_scope(&report, &plan, FINE);
    let calls = |kind: &str| cc.calls().iter().filter(|c| c.kind == kind).count();
    assert_eq!(calls(FORBIDDEN), 1, "a 4xx page is not retried");
    assert!(calls(MOTO) > 1, "a 5xx page is retried");
    // No error message carries the page's markup.
    for listing in &report.listings {
        let error = listing.error.as_deref().unwrap_or_default();
        assert!(!error.contains("<h1>") && !error.contains("<p>"), "{error}");
    }
}

#[tokio::test]
async fn a_next_token_that_never_ends_fails_the_scope_after_a_bound() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const SAME: &str = "AWS::SQS::Queue";
    const CYCLE: &str = "AWS::SNS::Topic";
    const ENDLESS: &str = "AWS::ECS::Cluster";
    const FINE: &str = "AWS::Lambda::Function";
    let kinds = [SAME, CYCLE, ENDLESS, FINE];
    for (kind, effect) in [
        (SAME, Effect::TokenCycle { tokens: 1 }),
        (CYCLE, Effect::TokenCycle { tokens: 3 }),
        (ENDLESS, Effect::EndlessTokens),
    ] {
        cc.inject(Fault {
            account: Some(HOSTILE.into()),
            region: None,
            kind: Some(kind.into()),
            effect,
        });
    }
    for kind in kinds {
        add_plain(&cc, kind, 2);
    }
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(
            kinds.iter().map(|k| kind(k)).collect(),
            list_of(&["us-east-1"]),
        ),
    )
    .await;
    let plan = plan_for(&report, &items, &kinds);
    assert_failed_scope(&report, &plan, SAME, &["PaginationLoop", "NextToken"]);
    assert_failed_scope(&report, &plan, CYCLE, &["PaginationLoop", "NextToken"]);
    assert_failed_scope(
        &report,
        &plan,
        ENDLESS,
        &["PaginationLimit", "NextToken", "pages"],
    );
    assert_complete_scope(&report, &plan, FINE);
    let calls = |kind: &str| cc.calls().iter().filter(|c| c.kind == kind).count();
    assert_eq!(calls(SAME), 2, "a repeated token is caught at once");
    assert_eq!(calls(CYCLE), 4, "a cycle is caught when it comes round");
    let endless = calls(ENDLESS);
    assert!(
        (1_000..=100_000).contains(&endless),
        "an endless listing stops after a bound ({endless} pages)"
    );
}

#[tokio::test]
async fn empty_pages_with_a_next_token_are_followed_to_the_items() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const SPARSE: &str = "AWS::SQS::Queue";
    cc.inject(Fault {
        account: Some(HOSTILE.into()),
        region: None,
        kind: Some(SPARSE.into()),
        effect: Effect::EmptyPages { pages: 4 },
    });
    add_plain(&cc, SPARSE, 5);
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(
        &source,
        &request(vec![kind(SPARSE)], list_of(&["us-east-1"])),
    )
    .await;
    let plan = plan_for(&report, &items, &[SPARSE]);
    assert_complete_scope(&report, &plan, SPARSE);
    let mut listed: Vec<&str> = items.iter().map(|i| i.identifier.as_str()).collect();
    listed.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("aws_sqs_queue-{i}")).collect();
    assert_eq!(listed, expected);
    // 4 empty pages, then 5 items in pages of 3.
    assert_eq!(cc.calls().len(), 4 + 2);
}

/// The listing benchmark (bench/aws/run.sh, figures in BENCHMARKS.md): 20 accounts × 3 regions
/// × 5 kinds × 3 pages, every stand-in call 50 ms. Prints wall times; asserts only completeness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/aws/run.sh"]
async fn bench_listing_twenty_accounts() {
    const LATENCY: Duration = Duration::from_millis(50);
    let regions = ["eu-west-1", "us-east-1", "us-west-2"];
    let kinds = [
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::Lambda::Function",
        "AWS::EC2::Instance",
        "AWS::ECS::Cluster",
    ];
    let accounts: Vec<String> = (0..20)
        .map(|i| format!("{:012}", 200_000_000_000u64 + i))
        .collect();
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    for a in &accounts {
        for r in regions {
            for k in kinds {
                for i in 0..9 {
                    cc.add(a, r, k, &format!("{k}-{i}"), json!({"Index": i}));
                }
            }
        }
    }
    sts.set_latency(LATENCY);
    cc.set_latency(LATENCY);
    let req = request(kinds.iter().map(|k| kind(k)).collect(), list_of(&regions));
    for rps in [1000.0, 10.0] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut cfg = source_config();
            cfg.account_role_arns = Some(accounts.iter().map(|a| role(a)).collect());
            cfg.concurrency_accounts = 5;
            cfg.requests_per_second = rps;
            // A new source each time, so that every run assumes every role again.
            let source = standin_source(&sts, &cc, cfg).await;
            let start = std::time::Instant::now();
            let (report, items) = run(&source, &req).await;
            times.push(start.elapsed());
            assert_eq!(items.len(), 20 * 3 * 5 * 9);
            assert!(report.listings.iter().all(|l| l.error.is_none()));
        }
        times.sort();
        println!(
            "BENCH requestsPerSecond={rps}: min {:.3} s, median {:.3} s, max {:.3} s over {} runs",
            times[0].as_secs_f64(),
            times[times.len() / 2].as_secs_f64(),
            times[times.len() - 1].as_secs_f64(),
            times.len()
        );
    }
}

#[tokio::test]
async fn unreadable_list_properties_are_read_again_with_get_resource_when_the_kind_uses_it() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const KIND: &str = "AWS::Kinesis::Stream";
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        KIND,
        "stream-1",
        "{not json",
        json!({"Name": "stream-1", "ShardCount": 2}),
    );
    let mut spec = kind(KIND);
    spec.use_get_resource_api = true;
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(vec![spec], list_of(&["us-east-1"]))).await;
    let listing = report
        .listings
        .iter()
        .find(|l| l.kind == KIND)
        .expect("listing");
    assert!(listing.error.is_none(), "{listing:?}");
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].properties,
        json!({"Name": "stream-1", "ShardCount": 2})
    );
}

/// A source in Organizations mode whose Organizations is the Cloud Control stand-in.
async fn organizations_source(
    sts: &StsStandIn,
    cc: &CloudControl,
    organizational_units: &[&str],
) -> AwsSource {
    sts.register_base_key(BASE_KEY);
    let mut cfg = source_config();
    cfg.account_role_arn = Some(role("111111111111"));
    cfg.organizational_units = organizational_units.iter().map(|u| u.to_string()).collect();
    let base = BaseAws {
        sdk_config: sdk_config(&sts.url).await,
        web_identity: None,
        endpoints: ServiceEndpoints {
            organizations: Some(cc.url.clone()),
            cloudcontrol: Some(cc.url.clone()),
            account: Some(cc.url.clone()),
            ..ServiceEndpoints::default()
        },
    };
    AwsSource::with_base(cfg, base).await.expect("source")
}

#[tokio::test]
async fn organizations_pages_that_repeat_their_next_token_fail_discovery_instead_of_hanging() {
    for (operation, units) in [
        ("ListAccounts", &[][..]),
        ("ListAccountsForParent", &["ou-root-1"][..]),
        ("ListOrganizationalUnitsForParent", &["ou-root-1"][..]),
    ] {
        let sts = StsStandIn::start().await;
        let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
        cc.serve_organization(HOSTILE);
        cc.repeat_organizations_token(operation, "again");
        let source = organizations_source(&sts, &cc, units).await;
        let (discovery, accounts) =
            tokio::time::timeout(Duration::from_secs(30), source.accounts())
                .await
                .unwrap_or_else(|_| panic!("{operation}: discovery never ended"))
                .expect("accounts");
        assert_eq!(discovery.status, DiscoveryStatus::Failed, "{operation}");
        let error = discovery.error.unwrap_or_default();
        assert!(
            error.contains(operation) && error.contains("PaginationLoop"),
            "{operation}: {error}"
        );
        assert!(accounts.is_empty(), "{operation}: {accounts:?}");
    }
}

#[tokio::test]
async fn region_pages_end_on_an_empty_next_token_and_fail_on_a_repeated_one() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const ENDS: &str = "333333333333";
    cc.set_regions(ENDS, &["eu-west-1", "us-east-1", "eu-central-1"]);
    for (account, token) in [(HOSTILE, "again"), (ENDS, "")] {
        cc.inject(Fault {
            account: Some(account.into()),
            region: None,
            kind: None,
            effect: Effect::RegionsNextToken(token.into()),
        });
    }
    let mut cfg = source_config();
    cfg.account_role_arns = Some(vec![role(HOSTILE), role(ENDS)]);
    let source = standin_source(&sts, &cc, cfg).await;
    let (_, accounts) = tokio::time::timeout(Duration::from_secs(30), source.accounts())
        .await
        .expect("the region lookups never ended")
        .expect("accounts");
    let looping = account(&accounts, HOSTILE);
    let error = looping.regions_error.clone().unwrap_or_default();
    assert!(
        error.contains("ListRegions") && error.contains("PaginationLoop"),
        "{looping:?}"
    );
    let ended = account(&accounts, ENDS);
    assert_eq!(ended.regions_error, None);
    assert_eq!(
        ended.regions,
        vec!["eu-west-1", "us-east-1"],
        "the first page only"
    );
}

/// `{"Deep": [[…[1]…]]}`: `levels` levels of objects and arrays in all.
fn nested(levels: usize) -> serde_json::Value {
    let mut value = json!(1);
    for _ in 1..levels {
        value = json!([value]);
    }
    json!({ "Deep": value })
}

#[tokio::test]
async fn properties_nested_past_the_cap_fail_their_item_and_those_below_it_map_in_the_worker_and_replay()
 {
    const QUEUE: &str = "AWS::SQS::Queue";
    const TOPIC: &str = "AWS::SNS::Topic";
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    add_plain(&cc, QUEUE, 2);
    add_plain(&cc, TOPIC, 2);
    // Valid JSON that serde_json reads (it stops at 128), but that the watch's mapping worker
    // and a snapshot file, which wrap items deeper, could not read back.
    let too_deep = nested(110);
    cc.add_raw(
        HOSTILE,
        "us-east-1",
        QUEUE,
        "q-too-deep",
        &too_deep.to_string(),
        too_deep.clone(),
    );
    let deep = nested(90);
    cc.add(HOSTILE, "us-east-1", TOPIC, "t-deep", deep.clone());
    let source = hostile_source(&sts, &cc).await;
    let both = request(vec![kind(QUEUE), kind(TOPIC)], list_of(&["us-east-1"]));
    let (report, items) = run(&source, &both).await;
    let plan = plan_for(&report, &items, &[QUEUE, TOPIC]);
    assert_failed_scope(
        &report,
        &plan,
        QUEUE,
        &[
            "InvalidProperties",
            "q-too-deep",
            "nests more than 100 levels",
        ],
    );
    assert_complete_scope(&report, &plan, TOPIC);
    let listed = items
        .iter()
        .find(|i| i.identifier == "t-deep")
        .expect("the 90-level item is listed");
    assert_eq!(listed.properties, deep);
    assert!(!items.iter().any(|i| i.identifier == "q-too-deep"));

    // The watch maps items in a child process, one level deeper on the wire.
    let mapping = tidemark::core::mapping::MappingSource {
        name: "mapping.yaml".into(),
        text: format!(
            "resources:\n  - kind: {TOPIC}\n    port:\n      entity:\n        mappings:\n          identifier: .Identifier\n          blueprint: '\"q\"'\n          properties:\n            deep: .Properties.Deep\n"
        ),
    };
    let (mappings, _) = tidemark::core::mapping::Mappings::load(
        &[mapping],
        &tidemark::core::mapping::LoadOptions::default(),
    )
    .expect("the mapping compiles");
    let mut worker =
        tidemark::sandbox::worker::Worker::new(env!("CARGO_BIN_EXE_tidemark").into(), &mappings);
    let outcomes = worker
        .map_items(std::slice::from_ref(listed))
        .expect("the worker answers");
    assert_eq!(outcomes, vec![mappings.map_item(listed)]);
    assert_eq!(outcomes[0].errors, Vec::<String>::new());
    assert_eq!(
        outcomes[0].entities[0]
            .entity
            .properties
            .as_ref()
            .map(|p| &p["deep"]),
        Some(&deep["Deep"])
    );

    // A snapshot, two levels deeper in its files, reads back what it recorded.
    let dir = tempfile::tempdir().expect("tempdir");
    tidemark::adapters::snapshot::write_snapshot(dir.path(), &report, &items, "now")
        .expect("snapshot written");
    let replay =
        tidemark::adapters::snapshot::SnapshotSource::new(dir.path(), list_of(&["us-east-1"]));
    let (replay_report, replayed) = run_source(&replay, &both).await;
    let mut recorded = report.listings.clone();
    let mut replayed_listings = replay_report.listings.clone();
    recorded.sort();
    replayed_listings.sort();
    assert_eq!(replayed_listings, recorded);
    let replayed = replayed
        .iter()
        .find(|i| i.identifier == "t-deep")
        .expect("the 90-level item is replayed");
    assert_eq!(replayed.properties, deep);
}

async fn run_source(source: &impl Source, request: &ListRequest) -> (SourceReport, Vec<RawItem>) {
    let mut items = Vec::new();
    let mut sink = |page: Vec<RawItem>| items.extend(page);
    let report = source
        .list(request, &mut sink)
        .await
        .expect("the run completes");
    (report, items)
}

#[tokio::test]
async fn an_unreadable_listed_item_that_get_resource_gives_no_properties_for_fails_its_scope() {
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const BARE: &str = "AWS::Kinesis::Stream";
    const EMPTY: &str = "AWS::SQS::Queue";
    const BLANK: &str = "AWS::SNS::Topic";
    for (kind, description) in [
        (BARE, None),
        (EMPTY, Some(json!({}))),
        (BLANK, Some(json!({"Properties": ""}))),
    ] {
        let full = json!({"Name": "never-served"});
        cc.add_raw(
            HOSTILE,
            "us-east-1",
            kind,
            "unreadable",
            "{not json",
            full.clone(),
        );
        cc.add_raw(
            HOSTILE,
            "us-east-1",
            kind,
            "readable",
            r#"{"Name":"readable"}"#,
            full,
        );
        cc.inject(Fault {
            account: Some(HOSTILE.into()),
            region: None,
            kind: Some(kind.into()),
            effect: Effect::GetWithoutProperties { description },
        });
    }
    let specs = [BARE, EMPTY, BLANK]
        .iter()
        .map(|k| {
            let mut spec = kind(k);
            spec.use_get_resource_api = true;
            spec
        })
        .collect();
    let source = hostile_source(&sts, &cc).await;
    let (report, items) = run(&source, &request(specs, list_of(&["us-east-1"]))).await;
    let plan = plan_for(&report, &items, &[BARE, EMPTY, BLANK]);
    for kind in [BARE, EMPTY, BLANK] {
        assert_failed_scope(
            &report,
            &plan,
            kind,
            &["InvalidProperties", "unreadable", "GetResource"],
        );
        // What was read in the listing is kept when GetResource gives nothing better.
        let kept: Vec<(&str, &serde_json::Value)> = items
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| (i.identifier.as_str(), &i.properties))
            .collect();
        assert_eq!(
            kept,
            vec![("readable", &json!({"Name": "readable"}))],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn account_ids_and_regions_that_are_not_aws_names_fail_the_account_and_never_become_paths() {
    // Organizations and ListRegions answers become snapshot paths: DIR/<account>/<region>/….
    let sts = StsStandIn::start().await;
    let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
    const ESCAPE: &str = "../escaped";
    cc.serve_organization(ESCAPE);
    let source = organizations_source(&sts, &cc, &[]).await;
    let queues = request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"]));
    let (report, _) = run(&source, &queues).await;
    let odd = account(&report.accounts, ESCAPE);
    assert!(!odd.assumed, "{odd:?}");
    let error = odd.error.clone().unwrap_or_default();
    assert!(error.contains("12 digits"), "{error}");
    assert!(!report.listings.iter().any(|l| l.account == ESCAPE));

    cc.set_regions(HOSTILE, &["us-east-1", "../../escaped"]);
    let source = hostile_source(&sts, &cc).await;
    let (regions_report, _) = run(
        &source,
        &request(vec![kind("AWS::SQS::Queue")], Regions::Enabled),
    )
    .await;
    let odd = account(&regions_report.accounts, HOSTILE);
    let error = odd.regions_error.clone().unwrap_or_default();
    assert!(
        error.contains("../../escaped") && error.contains("not a region name"),
        "{odd:?}"
    );
    assert!(
        regions_report.listings.is_empty(),
        "{:?}",
        regions_report.listings
    );

    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("a/snapshot");
    for report in [&report, &regions_report] {
        tidemark::adapters::snapshot::write_snapshot(&dir, report, &[], "now")
            .expect("snapshot written");
    }
    assert!(!root.path().join("a/escaped").exists());
    assert!(!root.path().join("escaped").exists());
}

#[tokio::test]
async fn absurd_concurrency_and_request_rates_neither_panic_nor_stall_the_listing() {
    // What a config loader that lets `accounts: 1e300` or `requestsPerSecond: 1e-300` through
    // hands the source.
    for (accounts, rate) in [
        (usize::MAX, 1e-300),
        (usize::MAX, f64::MIN_POSITIVE / 4.0),
        (0, 1e-19),
        (5, f64::MAX),
    ] {
        let sts = StsStandIn::start().await;
        let cc = CloudControl::start(Keys::StandIn(sts.keys())).await;
        add_plain(&cc, "AWS::SQS::Queue", 2);
        let mut cfg = source_config();
        cfg.account_role_arns = Some(vec![role(HOSTILE)]);
        cfg.concurrency_accounts = accounts;
        cfg.requests_per_second = rate;
        let source = standin_source(&sts, &cc, cfg).await;
        let queues = request(vec![kind("AWS::SQS::Queue")], list_of(&["us-east-1"]));
        let listed = tokio::spawn(async move {
            let (report, items) = run(&source, &queues).await;
            (report.listings, items.len())
        });
        let case = format!("{accounts} accounts at {rate:e}/s");
        let (listings, items) = tokio::time::timeout(Duration::from_secs(30), listed)
            .await
            .unwrap_or_else(|_| panic!("{case}: stalled"))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(listings.len(), 1, "{case}");
        assert_eq!(listings[0].error, None, "{case}");
        assert_eq!(items, 2, "{case}");
    }
}

// Issue 14: what Cloud Control really returns.
#[path = "aws/fidelity.rs"]
mod fidelity;
