#!/usr/bin/env python3
"""Writes examples/demo/snapshot: a small AWS organisation recorded in tidemark's snapshot format.

A management account and three member accounts, two regions, and about a hundred resources with
the property names and shapes of each type's CloudFormation resource schema (what Cloud Control
returns). Deterministic: running it again gives the same files. Run from anywhere:

    python3 examples/demo/generate.py
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "snapshot")
REGIONS = ["eu-west-1", "us-east-1"]
ACCOUNTS = [
    ("111111111111", "management", "aws-management@example.com"),
    ("222222222222", "prod", "aws-prod@example.com"),
    ("333333333333", "staging", "aws-staging@example.com"),
    ("444444444444", "dev", "aws-dev@example.com"),
]
rng = random.Random(42)


def hexid(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def tags(**kv):
    return [{"Key": k, "Value": v} for k, v in kv.items()]


def scope(items, account, region, kind, scopes, files):
    scopes.append({"account": account, "region": region, "kind": kind, "status": "ok", "error": None})
    files[(account, region, kind)] = items


def mapped_kinds():
    """Every kind the default mappings list, so the snapshot records each needed scope."""
    kinds = []
    with open(os.path.join(HERE, "..", "..", "mappings", "aws.yaml")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("- kind:"):
                kind = line.split(":", 1)[1].strip()
                if kind != "AWS::Account::Info" and kind not in kinds:
                    kinds.append(kind)
    return kinds


def is_global(kind):
    return kind == "AWS::S3::Bucket" or kind.startswith(("AWS::IAM::", "AWS::CloudFront::", "AWS::Route53::"))


def main():
    scopes, files = [], {}
    for account, name, _ in ACCOUNTS:
        env = name if name != "management" else "shared"
        # Global types, recorded once per account under its first region.
        buckets = []
        for suffix in (["logs", "artifacts", "static-site"] if name != "management" else ["cloudtrail", "billing-reports"]):
            bucket = f"acme-{env}-{suffix}-{account[-4:]}"
            props = {
                "BucketName": bucket,
                "Arn": f"arn:aws:s3:::{bucket}",
                "DomainName": f"{bucket}.s3.amazonaws.com",
                "RegionalDomainName": f"{bucket}.s3.eu-west-1.amazonaws.com",
                "WebsiteURL": f"http://{bucket}.s3-website-eu-west-1.amazonaws.com",
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms" if suffix != "static-site" else "AES256"}}]},
                "VersioningConfiguration": {"Status": "Enabled" if suffix != "static-site" else "Suspended"},
                "PublicAccessBlockConfiguration": {"BlockPublicAcls": suffix != "static-site", "BlockPublicPolicy": suffix != "static-site", "IgnorePublicAcls": suffix != "static-site", "RestrictPublicBuckets": suffix != "static-site"},
            }
            if suffix != "billing-reports":
                props["Tags"] = tags(team="platform" if suffix != "static-site" else "web", environment=env)
            buckets.append({"Identifier": bucket, "Properties": props})
        scope(buckets, account, REGIONS[0], "AWS::S3::Bucket", scopes, files)
        roles = []
        for role in ["PortOceanReadRole", f"{env}-deployer", f"{env}-lambda-exec"][: 3 if name != "management" else 1]:
            roles.append({"Identifier": role, "Properties": {
                "RoleName": role, "Arn": f"arn:aws:iam::{account}:role/{role}", "RoleId": "AROA" + hexid(16).upper(),
                "Path": "/", "MaxSessionDuration": 3600, "Description": f"{role} for {env}",
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
                "Tags": tags(managedBy="terraform"),
            }})
        scope(roles, account, REGIONS[0], "AWS::IAM::Role", scopes, files)
        if name == "management":
            continue
        for region in REGIONS:
            vpc_id = "vpc-" + hexid(17)
            cidr = f"10.{ACCOUNTS.index((account, name, _)) * 16 + REGIONS.index(region)}.0.0/16"
            scope([{"Identifier": vpc_id, "Properties": {
                "VpcId": vpc_id, "CidrBlock": cidr, "CidrBlockAssociations": [], "DefaultNetworkAcl": "acl-" + hexid(17),
                "DefaultSecurityGroup": "sg-" + hexid(17), "EnableDnsHostnames": True, "EnableDnsSupport": True,
                "InstanceTenancy": "default", "Tags": tags(Name=f"{env}-{region}", environment=env),
            }}], account, region, "AWS::EC2::VPC", scopes, files)
            subnets = []
            for i, az in enumerate(["a", "b"]):
                sid = "subnet-" + hexid(17)
                subnets.append({"Identifier": sid, "Properties": {
                    "SubnetId": sid, "VpcId": vpc_id, "CidrBlock": cidr.replace(".0.0/16", f".{i * 16}.0/20"),
                    "AvailabilityZone": region + az, "AvailabilityZoneId": region[:2] + "1-az" + str(i + 1),
                    "MapPublicIpOnLaunch": i == 0, "Tags": tags(Name=f"{env}-{'public' if i == 0 else 'private'}-{az}"),
                }})
            scope(subnets, account, region, "AWS::EC2::Subnet", scopes, files)
            sgs = []
            for sg_name, port in [("web", 443), ("db", 5432)]:
                gid = "sg-" + hexid(17)
                sgs.append({"Identifier": gid, "Properties": {
                    "GroupId": gid, "GroupName": f"{env}-{sg_name}", "GroupDescription": f"{sg_name} tier", "VpcId": vpc_id,
                    "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "CidrIp": "0.0.0.0/0" if sg_name == "web" else cidr}],
                    "SecurityGroupEgress": [{"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"}],
                    "Tags": tags(Name=f"{env}-{sg_name}"),
                }})
            scope(sgs, account, region, "AWS::EC2::SecurityGroup", scopes, files)
            instances = []
            for i in range(2 if name == "prod" else 1):
                iid = "i-" + hexid(17)
                public = i == 0
                ip = f"10.{cidr.split('.')[1]}.0.{10 + i}"
                props = {
                    "InstanceId": iid, "InstanceType": rng.choice(["t3.medium", "m6i.large", "c7g.xlarge"]), "ImageId": "ami-" + hexid(17),
                    "AvailabilityZone": region + "a", "SubnetId": subnets[0 if public else 1]["Identifier"], "VpcId": vpc_id,
                    "SecurityGroupIds": [sgs[0]["Identifier"]], "PrivateIp": ip,
                    "PrivateDnsName": f"ip-{ip.replace('.', '-')}.{region}.compute.internal",
                    "Tenancy": "default", "EbsOptimized": True, "Monitoring": False, "State": {"Code": "16", "Name": "running"},
                    "Tags": tags(Name=f"{env}-app-{i + 1}", team="payments" if i == 0 else "search"),
                }
                if public:
                    props["PublicIp"] = f"54.{rng.randint(1, 250)}.{rng.randint(1, 250)}.{rng.randint(1, 250)}"
                    props["PublicDnsName"] = f"ec2-{props['PublicIp'].replace('.', '-')}.{region}.compute.amazonaws.com"
                instances.append({"Identifier": iid, "Properties": props})
            scope(instances, account, region, "AWS::EC2::Instance", scopes, files)
            functions = []
            for fn in ["orders-api", "image-resizer", "nightly-report"]:
                fname = f"{env}-{fn}"
                functions.append({"Identifier": fname, "Properties": {
                    "FunctionName": fname, "Arn": f"arn:aws:lambda:{region}:{account}:function:{fname}",
                    "Runtime": rng.choice(["python3.12", "nodejs20.x", "java21"]), "Handler": "app.handler",
                    "MemorySize": rng.choice([128, 256, 512, 1024]), "Timeout": rng.choice([3, 30, 900]),
                    "Role": f"arn:aws:iam::{account}:role/{env}-lambda-exec", "Architectures": ["arm64"],
                    "PackageType": "Zip", "TracingConfig": {"Mode": "Active"},
                    "Environment": {"Variables": {"LOG_LEVEL": "info", "DB_PASSWORD": "do-not-map-me"}},
                    "VpcConfig": {"SubnetIds": [subnets[1]["Identifier"]], "SecurityGroupIds": [sgs[1]["Identifier"]]} if fn == "orders-api" else {},
                    "Tags": tags(team="payments" if fn == "orders-api" else "platform"),
                }})
            scope(functions, account, region, "AWS::Lambda::Function", scopes, files)
            queues = []
            for q in ["orders", "orders-dlq"]:
                qname = f"{env}-{q}"
                queues.append({"Identifier": f"https://sqs.{region}.amazonaws.com/{account}/{qname}", "Properties": {
                    "QueueName": qname, "QueueUrl": f"https://sqs.{region}.amazonaws.com/{account}/{qname}",
                    "Arn": f"arn:aws:sqs:{region}:{account}:{qname}", "VisibilityTimeout": 30, "MessageRetentionPeriod": 345600,
                    "SqsManagedSseEnabled": True, "DelaySeconds": 0, "FifoQueue": False,
                    "Tags": tags(team="payments"),
                }})
            scope(queues, account, region, "AWS::SQS::Queue", scopes, files)
            tables = []
            if region == REGIONS[0]:
                tname = f"{env}-orders"
                tables.append({"Identifier": tname, "Properties": {
                    "TableName": tname, "Arn": f"arn:aws:dynamodb:{region}:{account}:table/{tname}",
                    "BillingMode": "PAY_PER_REQUEST", "TableClass": "STANDARD",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                    "SSESpecification": {"SSEEnabled": True}, "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": name == "prod"},
                    "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "Tags": tags(team="payments"),
                }})
            scope(tables, account, region, "AWS::DynamoDB::Table", scopes, files)

    # Every other scope the default mappings need was listed and held nothing.
    for account, _, _ in ACCOUNTS:
        for kind in mapped_kinds():
            for region in REGIONS[:1] if is_global(kind) else REGIONS:
                if (account, region, kind) not in files:
                    scope([], account, region, kind, scopes, files)

    total = 0
    for (account, region, kind), items in sorted(files.items()):
        path = os.path.join(OUT, account, region, kind.replace("::", "_") + ".json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(items, f, indent=2, sort_keys=True)
            f.write("\n")
        total += len(items)
    manifest = {
        "format_version": "1",
        "recorded_at": "2026-11-01T09:00:00Z",
        "discovery": {"status": "ok", "error": None},
        "accounts": [
            {"Id": a, "Name": n, "Email": e, "Status": "ACTIVE", "Arn": f"arn:aws:organizations::111111111111:account/o-demo1234/{a}", "assumed": True, "error": None}
            for a, n, e in ACCOUNTS
        ],
        "scopes": sorted(scopes, key=lambda s: (s["account"], s["region"], s["kind"])),
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {total} resources in {len(files)} scopes to {OUT}")


if __name__ == "__main__":
    main()
