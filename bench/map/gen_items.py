#!/usr/bin/env python3
"""Writes N Cloud Control-shaped items (S3 buckets, EC2 instances, Lambda functions) as JSON lines:
`{"TypeName", "Identifier", "Properties": "<JSON string>"}`, as ListResources/GetResource return
them. Deterministic: the same N gives the same file. Usage: gen_items.py [N] > items.jsonl"""
import json
import random
import sys

ACCOUNT = "123456789012"
REGION = "us-east-1"


def tags(rng, name):
    out = [{"Key": "Name", "Value": name}, {"Key": "env", "Value": rng.choice(["prod", "staging", "dev"])}]
    for i in range(rng.randint(0, 4)):
        out.append({"Key": f"team-{i}", "Value": rng.choice(["core", "data", "web", "ops"])})
    return out


def bucket(rng, i):
    name = f"bucket-{i:06d}-{rng.randint(0, 99999):05d}"
    props = {
        "BucketName": name,
        "Arn": f"arn:aws:s3:::{name}",
        "DomainName": f"{name}.s3.amazonaws.com",
        "VersioningConfiguration": {"Status": rng.choice(["Enabled", "Suspended"])},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": rng.choice(["AES256", "aws:kms"])},
             "BucketKeyEnabled": rng.random() < 0.5}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "Tags": tags(rng, name),
    }
    return {"TypeName": "AWS::S3::Bucket", "Identifier": name, "Properties": json.dumps(props)}


def instance(rng, i):
    iid = f"i-{rng.getrandbits(64):016x}"
    props = {
        "InstanceId": iid,
        "InstanceType": rng.choice(["t3.micro", "m5.large", "c6g.xlarge"]),
        "ImageId": f"ami-{rng.getrandbits(32):08x}",
        "AvailabilityZone": REGION + rng.choice("abc"),
        "PrivateIpAddress": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "SubnetId": f"subnet-{rng.getrandbits(32):08x}",
        "SecurityGroupIds": [f"sg-{rng.getrandbits(32):08x}" for _ in range(rng.randint(1, 3))],
        "Monitoring": rng.random() < 0.3,
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": rng.choice([8, 20, 100]), "VolumeType": "gp3"}}],
        "Tags": tags(rng, f"web-{i}"),
    }
    return {"TypeName": "AWS::EC2::Instance", "Identifier": iid, "Properties": json.dumps(props)}


def function(rng, i):
    name = f"fn-{i:06d}"
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    props = {
        "FunctionName": name,
        "Arn": arn,
        "Runtime": rng.choice(["python3.12", "nodejs20.x", "java21"]),
        "Handler": "index.handler",
        "MemorySize": rng.choice([128, 256, 1024]),
        "Timeout": rng.choice([3, 30, 900]),
        "Role": f"arn:aws:iam::{ACCOUNT}:role/{name}-role",
        "Architectures": [rng.choice(["x86_64", "arm64"])],
        "Environment": {"Variables": {"DB_PASSWORD": f"pw-{rng.getrandbits(40):x}", "MODE": "prod"}},
        "TracingConfig": {"Mode": "PassThrough"},
        "Tags": tags(rng, name),
    }
    return {"TypeName": "AWS::Lambda::Function", "Identifier": name, "Properties": json.dumps(props)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rng = random.Random(42)
    makers = [bucket, instance, function]
    out = sys.stdout
    for i in range(n):
        out.write(json.dumps(makers[i % 3](rng, i)) + "\n")


if __name__ == "__main__":
    main()
