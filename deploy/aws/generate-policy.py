#!/usr/bin/env python3
"""Generates tidemark's least-privilege read policy from the default mappings.

Reads the kinds in mappings/aws.yaml (and whether each entry sets `useGetResourceAPI`), and writes:
  - deploy/aws/tidemark-read-policy.json: the IAM policy document, for users who attach it by hand;
  - the block between the GENERATED markers of each member-role template (deploy/aws/member-role-*.yaml).

Usage:
  deploy/aws/generate-policy.py            rewrite the files
  deploy/aws/generate-policy.py --check    exit 1 if a kind is not covered or a file is stale
  deploy/aws/generate-policy.py --check --mappings OTHER.yaml --out-dir DIR
                                           the same for other inputs (the lint script's broken copies)

Needs PyYAML (in .venv after .ci/install-lint-tools).

The permission table below is written by hand. Each row comes from the type's CloudFormation
resource schema, `handlers.list.permissions` and `handlers.read.permissions`, as vendored in
hashicorp/terraform-provider-awscc at f995d4f (2026-08-07),
internal/service/cloudformation/schemas/AWS_<Service>_<Type>.json, unless its `source` says otherwise.
Cloud Control runs a type's list or read handler with the caller's credentials, so the caller needs
those permissions besides cloudformation:ListResources / cloudformation:GetResource.
"""

import argparse
import json
import pathlib
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
AWSCC = "terraform-provider-awscc f995d4f schemas"

# Every Cloud Control read, whatever the kind.
CLOUD_CONTROL = ["cloudformation:ListResources", "cloudformation:GetResource"]
# `source.regions: enabled` reads each account's enabled regions.
REGIONS = ["account:ListRegions"]

# Kinds tidemark makes itself, with no AWS call of their own.
SYNTHETIC = {"AWS::Account::Info"}

# kind -> list permissions, read permissions, and:
#   partial_list: the type's list handler returns a partial model (research in the project's notes:
#     handler sources and the list permissions), so the default mapping may switch it to
#     useGetResourceAPI. Its read permissions are granted already, so that a role deployed across
#     an organisation by StackSet keeps working when tidemark's default mappings make that switch.
#   withheld: read permissions left out on purpose, each with the reason.
#   no_read: the kind must stay list-only; a mapping that reads it with GetResource is an error.
PERMISSIONS = {
    "AWS::ApiGateway::RestApi": {
        "list": ["apigateway:GET"],
        "read": ["apigateway:GET"],
        "source": AWSCC,
    },
    "AWS::CloudFront::Distribution": {
        "list": ["cloudfront:ListDistributions", "cloudfront:ListTagsForResource"],
        "read": ["cloudfront:GetDistribution", "cloudfront:GetDistributionConfig", "cloudfront:ListTagsForResource"],
        "source": AWSCC,
        "partial_list": True,
    },
    "AWS::DynamoDB::Table": {
        "list": ["dynamodb:ListTables"],
        "read": [
            "dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups", "dynamodb:DescribeContributorInsights",
            "dynamodb:DescribeKinesisStreamingDestination", "dynamodb:ListTagsOfResource",
            "dynamodb:GetResourcePolicy", "dynamodb:DescribeTimeToLive",
        ],
        "source": AWSCC,
    },
    "AWS::EC2::Instance": {
        "list": ["ec2:DescribeInstances"],
        "read": [
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeVolumes", "ec2:DescribeInstances",
            "ec2:DescribeInstanceAttribute", "ec2:DescribeInstanceCreditSpecifications",
            "ec2:DescribeLaunchTemplates", "ssm:DescribeAssociation", "ssm:ListAssociations",
        ],
        "source": AWSCC,
    },
    "AWS::EC2::SecurityGroup": {
        "list": ["ec2:DescribeSecurityGroups"],
        "read": ["ec2:DescribeSecurityGroups"],
        "source": AWSCC,
    },
    "AWS::EC2::Subnet": {
        "list": ["ec2:DescribeSubnets", "ec2:DescribeNetworkAcls"],
        "read": ["ec2:DescribeSubnets", "ec2:DescribeNetworkAcls"],
        "source": AWSCC,
    },
    "AWS::EC2::VPC": {
        "list": ["ec2:DescribeVpcs", "ec2:DescribeVpcEncryptionControls"],
        "read": [
            "ec2:DescribeNetworkAcls", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcAttribute",
            "ec2:DescribeVpcEncryptionControls", "ec2:DescribeVpcs",
        ],
        "source": AWSCC,
        "partial_list": True,
    },
    "AWS::EC2::Volume": {
        "list": ["ec2:DescribeVolumes", "ec2:DescribeTags", "ec2:DescribeVolumeAttribute"],
        "read": ["ec2:DescribeVolumes", "ec2:DescribeVolumeAttribute", "ec2:DescribeTags"],
        "source": AWSCC,
    },
    "AWS::ECR::Repository": {
        "list": ["ecr:DescribeRepositories"],
        "read": ["ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy", "ecr:ListTagsForResource"],
        "source": AWSCC,
        "partial_list": True,
    },
    "AWS::ECS::Cluster": {
        "list": ["ecs:ListClusters", "ecs:DescribeClusters"],
        "read": ["ecs:DescribeClusters", "kms:DescribeKey"],
        "source": AWSCC,
    },
    "AWS::ECS::Service": {
        "list": ["ecs:ListClusters", "ecs:ListServices", "ecs:DescribeServices"],
        "read": ["ecs:DescribeServices"],
        "source": AWSCC,
    },
    "AWS::EKS::Cluster": {
        "list": ["eks:ListClusters"],
        "read": ["eks:DescribeCluster"],
        "source": AWSCC,
    },
    "AWS::ElasticLoadBalancingV2::LoadBalancer": {
        "list": ["elasticloadbalancing:DescribeLoadBalancers"],
        "read": [
            "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeCapacityReservation", "elasticloadbalancing:DescribeTags",
        ],
        "source": AWSCC,
        "partial_list": True,
    },
    "AWS::IAM::Role": {
        "list": ["iam:ListRoles"],
        "read": ["iam:GetRole", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:GetRolePolicy"],
        "source": AWSCC,
        "partial_list": True,
    },
    "AWS::KMS::Key": {
        "list": ["kms:ListKeys", "kms:DescribeKey"],
        "read": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"],
        "source": AWSCC,
    },
    "AWS::Lambda::Function": {
        "list": ["lambda:ListFunctions"],
        "read": [
            "lambda:GetFunction", "kms:Decrypt", "lambda:GetFunctionCodeSigningConfig",
            "lambda:GetFunctionRecursionConfig", "lambda:GetRuntimeManagementConfig",
            "lambda:GetFunctionScalingConfig",
        ],
        "source": AWSCC,
        "partial_list": True,
        "withheld": {
            # The read handler decrypts environment variables with it. tidemark redacts them before
            # mapping and never maps them; without it Lambda answers with the variables' decryption
            # error in place of their values, and the rest of the model is read as usual.
            "kms:Decrypt": "decrypts data (Lambda environment variables), which tidemark never maps",
        },
    },
    "AWS::RDS::DBCluster": {
        "list": ["rds:DescribeDBClusters"],
        "read": ["rds:DescribeDBClusters"],
        "source": AWSCC,
    },
    "AWS::RDS::DBInstance": {
        "list": ["rds:DescribeDBInstances"],
        "read": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAvailabilityZones", "ec2:DescribeInternetGateways",
            "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcAttribute", "ec2:DescribeVpcs",
            "rds:DescribeDBInstances",
        ],
        "source": AWSCC,
    },
    "AWS::Route53::HostedZone": {
        "list": ["route53:ListHostedZones", "route53:GetHostedZone", "route53:ListQueryLoggingConfigs", "route53:ListTagsForResource"],
        "read": ["route53:GetHostedZone", "route53:ListTagsForResource", "route53:ListQueryLoggingConfigs"],
        "source": AWSCC,
    },
    "AWS::S3::Bucket": {
        "list": ["s3:ListAllMyBuckets"],
        # The schema spells one of them "S3:GetBucketWebsite"; IAM action names are not case
        # sensitive, and they are written in lower case here. s3:ListBucket lists object keys,
        # which the read handler asks for (ReadOnlyAccess grants it too).
        "read": [
            "s3:GetAccelerateConfiguration", "s3:GetLifecycleConfiguration", "s3:GetBucketPublicAccessBlock",
            "s3:GetAnalyticsConfiguration", "s3:GetBucketCORS", "s3:GetEncryptionConfiguration",
            "s3:GetInventoryConfiguration", "s3:GetBucketLogging", "s3:GetMetricsConfiguration",
            "s3:GetBucketNotification", "s3:GetBucketVersioning", "s3:GetReplicationConfiguration",
            "s3:GetBucketWebsite", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging",
            "s3:GetBucketOwnershipControls", "s3:GetIntelligentTieringConfiguration",
            "s3:GetBucketMetadataTableConfiguration", "s3:ListBucket",
        ],
        "source": AWSCC,
    },
    "AWS::SNS::Topic": {
        "list": ["sns:ListTopics"],
        "read": ["sns:GetTopicAttributes", "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic", "sns:GetDataProtectionPolicy"],
        "source": AWSCC,
    },
    "AWS::SQS::Queue": {
        "list": ["sqs:ListQueues"],
        "read": ["sqs:GetQueueAttributes", "sqs:ListQueueTags"],
        "source": AWSCC,
    },
    "AWS::SecretsManager::Secret": {
        "list": ["secretsmanager:ListSecrets"],
        "read": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        "source": AWSCC,
        "no_read": "its read handler needs secretsmanager:GetSecretValue, which reads every secret's value; "
                   "the default mapping keeps this kind list-only for that reason",
    },
    "AWS::StepFunctions::StateMachine": {
        # awscc's vendored schema for this type predates its list handler (no list permissions);
        # the list permission is from the handler repository's schema,
        # aws-cloudformation-resource-providers-stepfunctions statemachine/aws-stepfunctions-statemachine.json.
        "list": ["states:ListStateMachines"],
        "read": ["states:DescribeStateMachine", "states:ListTagsForResource"],
        "source": AWSCC + "; list: the Step Functions handler repository's schema",
        "partial_list": True,
    },
}

BEGIN = "# BEGIN GENERATED by deploy/aws/generate-policy.py from mappings/aws.yaml: do not edit by hand"
END = "# END GENERATED"
TEMPLATES = ["member-role-iam-user.yaml", "member-role-irsa.yaml"]
POLICY_JSON = "tidemark-read-policy.json"


class Uncovered(Exception):
    pass


def kinds_of(mapping_path):
    """kind -> whether any entry of it sets useGetResourceAPI, in the file's order."""
    with open(mapping_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    kinds = {}
    for entry in doc.get("resources") or []:
        kind = entry["kind"]
        uses_get = bool((entry.get("selector") or {}).get("useGetResourceAPI", False))
        kinds[kind] = kinds.get(kind, False) or uses_get
    return kinds


def plan(kinds):
    """Per kind: (kind, why, [actions]); raises Uncovered for a kind the table cannot serve."""
    rows = []
    for kind, uses_get in kinds.items():
        if kind in SYNTHETIC:
            continue
        row = PERMISSIONS.get(kind)
        if row is None:
            raise Uncovered(
                f"{kind} is in the mappings but has no row in PERMISSIONS in deploy/aws/generate-policy.py: "
                "add its handlers.list.permissions and handlers.read.permissions from its CloudFormation resource schema"
            )
        if uses_get and "no_read" in row:
            raise Uncovered(f"{kind} uses useGetResourceAPI, but {row['no_read']}")
        actions = list(row["list"])
        reads = uses_get or row.get("partial_list", False)
        if reads:
            actions += [a for a in row["read"] if a not in row.get("withheld", {})]
        why = "list + read (useGetResourceAPI)" if uses_get else (
            "list + read (its list handler returns a partial model)" if reads else "list")
        rows.append((kind, why, actions))
    return rows


def unique(actions):
    seen, out = set(), []
    for a in actions:
        key = a.lower()
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def policy_document(rows):
    handler_actions = sorted(unique(a for _, _, actions in rows for a in actions), key=str.lower)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "CloudControlRead", "Effect": "Allow", "Action": CLOUD_CONTROL, "Resource": "*"},
            {"Sid": "EnabledRegions", "Effect": "Allow", "Action": REGIONS, "Resource": "*"},
            {"Sid": "ResourceHandlers", "Effect": "Allow", "Action": handler_actions, "Resource": "*"},
        ],
    }


def template_block(rows, indent):
    """The ReadPolicy resource's PolicyDocument, as CloudFormation YAML with a comment per kind."""
    pad = " " * indent
    lines = [pad + BEGIN, pad + "PolicyDocument:", pad + "  Version: '2012-10-17'", pad + "  Statement:"]
    for sid, actions in (("CloudControlRead", CLOUD_CONTROL), ("EnabledRegions", REGIONS)):
        lines += [pad + f"    - Sid: {sid}", pad + "      Effect: Allow", pad + "      Resource: '*'", pad + "      Action:"]
        lines += [pad + f"        - {a}" for a in actions]
    lines += [pad + "    - Sid: ResourceHandlers", pad + "      Effect: Allow", pad + "      Resource: '*'", pad + "      Action:"]
    seen = set()
    for kind, why, actions in rows:
        fresh = [a for a in unique(actions) if a.lower() not in seen]
        seen.update(a.lower() for a in fresh)
        lines.append(pad + f"        # {kind}: {why}" + ("" if fresh else " (granted above)"))
        lines += [pad + f"        - {a}" for a in fresh]
    lines.append(pad + END)
    return "\n".join(lines) + "\n"


def splice(text, block, name):
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{name}: the GENERATED markers are missing")
    line_start = text.rfind("\n", 0, start) + 1
    indent = start - line_start
    line_end = text.index("\n", end) + 1
    return text[:line_start] + block(indent) + text[line_end:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a kind is uncovered or a file is stale")
    parser.add_argument("--mappings", default=str(REPO / "mappings" / "aws.yaml"))
    parser.add_argument("--out-dir", default=str(REPO / "deploy" / "aws"))
    args = parser.parse_args()
    out_dir = pathlib.Path(args.out_dir)

    try:
        rows = plan(kinds_of(args.mappings))
    except Uncovered as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    wanted = {POLICY_JSON: json.dumps(policy_document(rows), indent=2) + "\n"}
    for name in TEMPLATES:
        path = out_dir / name
        text = path.read_text(encoding="utf-8")
        wanted[name] = splice(text, lambda indent: template_block(rows, indent), name)

    stale = []
    for name, text in wanted.items():
        path = out_dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            "error: stale least-privilege policy in " + ", ".join(str(out_dir / s) for s in stale)
            + f" for {args.mappings}: run deploy/aws/generate-policy.py and commit the result",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(f"least-privilege policy: {len(rows)} kinds covered, files up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
