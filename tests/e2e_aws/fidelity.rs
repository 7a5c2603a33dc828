//! Issue 14 through the binary: an organisation whose Cloud Control answers as AWS does (the
//! stand-in's S3 across regions, partial list models, child types, types missing in a region),
//! synced into the local catalog.

use std::process::Output;

use serde_json::{Value as Json, json};

use super::support::aws_stand_ins::AwsStandIns;
use super::support::cli::{BIN, Workspace, assert_exit, code, text, withheld};
use super::support::cloudcontrol::{CloudControl, CrossRegion, Effect, Fault};
use super::support::fixtures;

const BASE_KEY: &str = "AKIATIDEMARKFIDELITY";
const MANAGEMENT: &str = "111111111111";
const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";

/// The stand-ins, a workspace, and the binary run against them.
struct Org {
    aws: AwsStandIns,
    ws: Workspace,
}

impl Org {
    /// An organisation of `members` (Organizations mode), listed in `regions` with `mappings`.
    fn new(members: &[&str], regions: &str, mappings: &str) -> Org {
        let aws = AwsStandIns::start(BASE_KEY, "fidelity-base-secret");
        aws.cc.serve_organization_of(members);
        let org = Org {
            aws,
            ws: Workspace::new(),
        };
        org.configure(regions, mappings);
        org
    }

    fn configure(&self, regions: &str, mappings: &str) {
        self.ws.write(
            "tidemark.yaml",
            &format!(
                "integration: {{identifier: e2e-fidelity}}\nsource:\n  type: aws\n  accounts:\n    accountRoleArn: arn:aws:iam::{MANAGEMENT}:role/PortOceanReadRole\n  regions: {regions}\n  concurrency: {{accounts: 2, requestsPerSecond: 1000}}\ncatalog: {{type: local}}\nmappings: {mappings}\n"
            ),
        );
    }

    /// The same organisation and workspace, with a new Cloud Control holding nothing yet: what
    /// AWS holds after resources were deleted.
    fn with_fresh_cloud_control(mut self, members: &[&str]) -> Org {
        self.aws.cc = self.aws.cloud_control();
        self.aws.cc.serve_organization_of(members);
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.ws.config();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-c", &config]);
        self.aws
            .command_in(BIN, self.ws.dir.path(), &self.aws.cc)
            .args(&all)
            .output()
            .expect("run tidemark")
    }

    /// `plan --format json`: (exit code, plan).
    fn plan(&self) -> (i32, Json) {
        let out = self.run(&["plan", "--format", "json"]);
        let plan = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan is not JSON ({e}): {}", text(&out.stderr)));
        (code(&out), plan)
    }

    /// The owned entities of `blueprint`: (account, identifier, entity).
    fn entities(&self, blueprint: &str) -> Vec<(String, String, Json)> {
        let out = self.run(&["entities", "--blueprint", blueprint]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        let mut found: Vec<(String, String, Json)> = text(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let line: Json = serde_json::from_str(l).expect("entity line");
                (
                    line["account"].as_str().unwrap_or_default().to_string(),
                    line["identifier"].as_str().unwrap_or_default().to_string(),
                    line["entity"].clone(),
                )
            })
            .collect();
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        found
    }

    fn apply(&self) -> Output {
        let out = self.run(&["apply"]);
        assert!(
            matches!(code(&out), 0 | 3),
            "apply: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

/// A bucket's full model, as GetResource returns it in the bucket's region (the stand-in adds
/// Arn, DomainName and RegionalDomainName).
fn bucket_model(name: &str) -> Json {
    json!({
        "BucketName": name,
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
        ]},
        "Tags": [{"Key": "team", "Value": "storage"}]
    })
}

#[test]
fn buckets_in_standard_and_opt_in_regions_all_reach_the_catalog_in_their_own_region() {
    // af-south-1 and ap-east-1 (opt-in) sort before eu-west-1 and us-east-1.
    let org = Org::new(
        &[PROD, STAGING],
        "[af-south-1, ap-east-1, eu-west-1, us-east-1]",
        "[builtin:aws]",
    );
    // The strictest answer: no region reads another's bucket.
    org.aws.cc.set_cross_region(CrossRegion::NotFound);
    let buckets = [
        (PROD, "prod-logs", "us-east-1"),
        (PROD, "prod-assets", "eu-west-1"),
        (PROD, "prod-cape", "af-south-1"),
        (PROD, "prod-hk", "ap-east-1"),
        (STAGING, "staging-cape", "af-south-1"),
        (STAGING, "staging-assets", "eu-west-1"),
    ];
    for (account, name, home) in buckets {
        org.aws
            .cc
            .add_resource(account, home, "AWS::S3::Bucket", name, bucket_model(name));
    }
    let out = org.apply();
    assert_exit(&out, 0);

    let entities = org.entities("awsS3Bucket");
    let mut expected: Vec<(String, String)> = buckets
        .iter()
        .map(|(account, name, _)| (account.to_string(), format!("arn:aws:s3:::{name}")))
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = entities
        .iter()
        .map(|(a, id, _)| (a.clone(), id.clone()))
        .collect();
    assert_eq!(got, expected, "every bucket of every account");
    for (_, id, entity) in &entities {
        let name = id.trim_start_matches("arn:aws:s3:::");
        let home = buckets
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(_, _, h)| *h)
            .expect("a known bucket");
        let properties = &entity["properties"];
        assert_eq!(properties["region"], json!(home), "{id}: {entity:#}");
        // Mapped from the full model, which only a read in the bucket's region gives.
        assert_eq!(properties["versioning"], json!("Enabled"), "{id}");
        assert_eq!(properties["encryption"], json!("aws:kms"), "{id}");
        assert_eq!(properties["tags"], json!({"team": "storage"}), "{id}");
    }

    // Nothing changed in AWS: the second run writes nothing and deletes nothing.
    let out = org.apply();
    assert_exit(&out, 0);
    let said = text(&out.stdout);
    assert!(
        said.contains("No changes") && !said.contains("Applied"),
        "{said}"
    );
    assert_eq!(org.entities("awsS3Bucket").len(), buckets.len());
}

/// The `port:` section of a nodegroup: a `nodegroup` entity with its cluster.
const NODEGROUP_PORT: &str = r#"    port:
      entity:
        mappings:
          identifier: .Identifier
          title: .Properties.NodegroupName
          blueprint: '"nodegroup"'
          properties:
            cluster: .Properties.ClusterName
"#;

/// Nodegroups named by cluster: blue's in us-east-1, green's in eu-west-1.
fn nodegroup_mapping() -> String {
    let of = |cluster: &str, region: &str| {
        format!(
            "  - kind: AWS::EKS::Nodegroup\n    selector:\n      resourceModel: {{ClusterName: {cluster}}}\n      regionPolicy: {{allow: [{region}]}}\n{NODEGROUP_PORT}"
        )
    };
    format!(
        "\nresources:\n{}{}",
        of("blue", "us-east-1"),
        of("green", "eu-west-1")
    )
}

/// Nodegroups listed per cluster the cluster listing found.
fn derived_nodegroup_mapping() -> String {
    fixtures::nodegroups_from_clusters(NODEGROUP_PORT)
}

const NODEGROUP_BLUEPRINTS: &str = r#"[
  {"identifier": "nodegroup", "title": "Nodegroup",
   "schema": {"properties": {"cluster": {"type": "string"}}}, "relations": {}}
]"#;

/// Two clusters in two regions of one account: blue (us-east-1) and green (eu-west-1).
fn add_clusters(cc: &CloudControl, green_groups: &[&str]) {
    for (cluster, region, groups) in [
        ("blue", "us-east-1", &["blue-a", "blue-b"][..]),
        ("green", "eu-west-1", green_groups),
    ] {
        cc.add_resource(
            PROD,
            region,
            "AWS::EKS::Cluster",
            cluster,
            json!({"Name": cluster}),
        );
        for group in groups {
            cc.add_resource(
                PROD,
                region,
                "AWS::EKS::Nodegroup",
                &format!("{cluster}/{group}"),
                json!({"ClusterName": cluster, "NodegroupName": group}),
            );
        }
    }
}

fn nodegroup_ids(org: &Org) -> Vec<String> {
    org.entities("nodegroup")
        .into_iter()
        .map(|(_, id, _)| id)
        .collect()
}

/// Prod, listed in eu-west-1 and us-east-1, with its nodegroups mapped by `mapping`.
fn nodegroup_org(mapping: &str) -> Org {
    let org = Org::new(
        &[PROD],
        "[eu-west-1, us-east-1]",
        "[mappings/nodegroups.yaml]",
    );
    org.ws.write("mappings/nodegroups.yaml", mapping);
    org.ws
        .write("mappings/blueprints.json", NODEGROUP_BLUEPRINTS);
    org
}

#[test]
fn nodegroups_of_two_clusters_in_two_regions_are_all_listed_by_model_or_from_their_clusters() {
    let org = nodegroup_org(&nodegroup_mapping());
    add_clusters(&org.aws.cc, &["green-a"]);
    let all = vec![
        "blue/blue-a".to_string(),
        "blue/blue-b".to_string(),
        "green/green-a".to_string(),
    ];

    // Two resourceModels: both clusters' nodegroups, and none mapped by the other's entry.
    assert_exit(&org.apply(), 0);
    assert_eq!(nodegroup_ids(&org), all);
    for (_, id, entity) in org.entities("nodegroup") {
        let cluster = id.split('/').next().unwrap_or_default();
        assert_eq!(entity["properties"]["cluster"], json!(cluster), "{id}");
    }
    let (exit, plan) = org.plan();
    assert_eq!(exit, 0, "{plan:#}");
    assert_eq!(plan["summary"]["delete"], 0);
    assert_eq!(plan["summary"]["update"], 0);

    // The same nodegroups from the clusters the listing finds, with no model written by hand.
    org.ws
        .write("mappings/nodegroups.yaml", &derived_nodegroup_mapping());
    let (exit, plan) = org.plan();
    assert_eq!(exit, 0, "{plan:#}");
    assert_eq!(plan["summary"]["create"], 0, "{plan:#}");
    assert_eq!(plan["summary"]["delete"], 0, "{plan:#}");
    assert_eq!(plan["summary"]["unchanged"], 3, "{plan:#}");
}

#[test]
fn a_failed_cluster_listing_withholds_the_deletes_of_its_regions_nodegroups() {
    let org = nodegroup_org(&derived_nodegroup_mapping());
    add_clusters(&org.aws.cc, &["green-a", "green-b"]);
    assert_exit(&org.apply(), 0);
    assert_eq!(nodegroup_ids(&org).len(), 4);

    // green-b is deleted in AWS, and the cluster listing in eu-west-1 is then denied.
    let org = org.with_fresh_cloud_control(&[PROD]);
    add_clusters(&org.aws.cc, &["green-a"]);
    org.aws.cc.inject(Fault {
        account: Some(PROD.into()),
        region: Some("eu-west-1".into()),
        kind: Some("AWS::EKS::Cluster".into()),
        effect: Effect::Error {
            code: "AccessDeniedException".into(),
            message: "not authorized to perform eks:ListClusters".into(),
        },
    });
    let (exit, plan) = org.plan();
    assert_eq!(exit, 3, "{plan:#}");
    let deleted: Vec<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["action"] == "delete")
        .filter_map(|c| c["identifier"].as_str())
        .collect();
    assert!(deleted.is_empty(), "{deleted:?}");
    let withheld = withheld(&plan);
    assert!(
        withheld.contains(&("green/green-b", "scope_failed")),
        "{withheld:?}"
    );
    let scopes = plan["scopes"].as_array().expect("scopes");
    assert!(
        scopes.iter().any(|s| s["kind"] == "AWS::EKS::Nodegroup"
            && s["region"] == "eu-west-1"
            && s["error"]
                .as_str()
                .unwrap_or_default()
                .contains("AWS::EKS::Cluster listing in eu-west-1 failed")),
        "{scopes:?}"
    );
}

const REPOSITORY_MAPPING: &str = r#"
resources:
  - kind: AWS::ECR::Repository
    selector:
      useGetResourceAPI: true
    port:
      entity:
        mappings:
          identifier: .Identifier
          blueprint: '"repository"'
          properties:
            region: .__Region
"#;

const REPOSITORY_BLUEPRINTS: &str = r#"[
  {"identifier": "repository", "title": "Repository",
   "schema": {"properties": {"region": {"type": "string"}}}, "relations": {}}
]"#;

#[test]
fn a_type_missing_in_one_region_is_exit_0_without_warnings_until_something_owned_may_be_there() {
    let org = Org::new(
        &[PROD, STAGING],
        "[eu-west-1, us-east-1]",
        "[mappings/repositories.yaml]",
    );
    org.ws
        .write("mappings/repositories.yaml", REPOSITORY_MAPPING);
    org.ws
        .write("mappings/blueprints.json", REPOSITORY_BLUEPRINTS);
    for account in [PROD, STAGING] {
        org.aws.cc.add_resource(
            account,
            "us-east-1",
            "AWS::ECR::Repository",
            &format!("repo-{account}"),
            json!({"RepositoryName": format!("repo-{account}")}),
        );
    }
    org.aws
        .cc
        .type_missing_in("eu-west-1", "AWS::ECR::Repository");
    for _ in 0..2 {
        let out = org.apply();
        assert_exit(&out, 0);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("WARN"), "no warning: {stderr}");
    }
    assert_eq!(org.entities("repository").len(), 2);

    // The type exists in eu-west-1 for a while and a repository is synced from there; then it
    // is gone from the region's registry again. That repository may still be there.
    let org = org.with_fresh_cloud_control(&[PROD, STAGING]);
    for account in [PROD, STAGING] {
        org.aws.cc.add_resource(
            account,
            "us-east-1",
            "AWS::ECR::Repository",
            &format!("repo-{account}"),
            json!({"RepositoryName": format!("repo-{account}")}),
        );
    }
    org.aws.cc.add_resource(
        PROD,
        "eu-west-1",
        "AWS::ECR::Repository",
        "repo-ireland",
        json!({"RepositoryName": "repo-ireland"}),
    );
    assert_exit(&org.apply(), 0);
    assert_eq!(org.entities("repository").len(), 3);
    org.aws
        .cc
        .type_missing_in("eu-west-1", "AWS::ECR::Repository");
    let (exit, plan) = org.plan();
    assert_eq!(exit, 3, "{plan:#}");
    assert_eq!(plan["summary"]["delete"], 0, "{plan:#}");
    let withheld = plan["withheld"].as_array().expect("withheld");
    assert_eq!(withheld.len(), 1, "{withheld:?}");
    assert_eq!(withheld[0]["identifier"], "repo-ireland");
    assert_eq!(withheld[0]["account"], PROD);
    assert_eq!(withheld[0]["reason"], "scope_failed");
    // Staging owns nothing there, so its listing is complete.
    let scopes = plan["scopes"].as_array().expect("scopes");
    let failed: Vec<(&str, &str)> = scopes
        .iter()
        .map(|s| {
            (
                s["account"].as_str().unwrap_or_default(),
                s["region"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(failed, vec![(PROD, "eu-west-1")]);
}
