#!/usr/bin/env python3
"""A snapshot of N resources (default 20,000) for the no-op plan benchmark: 4 accounts, 2 regions,
SQS queues, Lambda functions and S3 buckets with realistic Cloud Control shapes."""
import json
import os
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
accounts = ["222222222222", "333333333333", "444444444444", "555555555555"]
regions = ["eu-west-1", "us-east-1"]
scopes = []
per_scope = n // (len(accounts) * len(regions) * 2)
for a in accounts:
    for r in regions:
        for kind in ["AWS::SQS::Queue", "AWS::Lambda::Function"]:
            items = []
            for i in range(per_scope):
                if kind == "AWS::SQS::Queue":
                    name = f"q-{r}-{i}"
                    items.append({"Identifier": f"https://sqs.{r}.amazonaws.com/{a}/{name}", "Properties": {
                        "QueueName": name, "Arn": f"arn:aws:sqs:{r}:{a}:{name}", "MessageRetentionPeriod": 345600,
                        "VisibilityTimeout": 30, "Tags": [{"Key": "team", "Value": f"team-{i % 17}"}, {"Key": "env", "Value": "prod"}]}})
                else:
                    name = f"fn-{r}-{i}"
                    items.append({"Identifier": name, "Properties": {
                        "FunctionName": name, "Arn": f"arn:aws:lambda:{r}:{a}:function:{name}", "Runtime": "python3.12",
                        "MemorySize": 256, "Timeout": 30, "Handler": "app.handler",
                        "Tags": [{"Key": "team", "Value": f"team-{i % 17}"}]}})
            path = os.path.join(out, a, r, kind.replace("::", "_") + ".json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            json.dump(items, open(path, "w"))
            scopes.append({"account": a, "region": r, "kind": kind, "status": "ok", "error": None})
manifest = {"format_version": "1", "recorded_at": "2026-11-01T00:00:00Z", "discovery": {"status": "ok", "error": None},
            "accounts": [{"Id": a, "Name": f"acct-{a[:3]}", "assumed": True, "error": None} for a in accounts], "scopes": scopes}
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
print(f"{per_scope * len(scopes)} resources")
