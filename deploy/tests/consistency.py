#!/usr/bin/env python3
"""Checks that the deploy artifacts agree with each other, where no linter looks:

- the IRSA templates (deploy/aws/member-role-irsa.yaml, hub-role.yaml) trust exactly the
  ServiceAccount the rendered manifests run as, and the roles the ServiceAccount and the config
  name are the templates' RoleName and RolePath;
- the config in the ConfigMap is where the Deployment reads it (a folder mount, so hot reload
  works), and its Port credential files are in the mounted Secret;
- ports, probes, labels and selectors line up across the Deployment, Service, ServiceMonitor and
  NetworkPolicy; the memory limit leaves room for the configured cache;
- the Dockerfile's user and port are the ones the manifests expect.

Usage: deploy/tests/consistency.py RENDERED.yaml [--aws-dir DIR] [--dockerfile FILE]
Exit 1 with every mismatch listed. Needs PyYAML (in .venv).
"""

import argparse
import pathlib
import re
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsics (!Ref, !Sub, ...) become {"Fn::X": value}."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def defaults(template_path):
    doc = yaml.load(template_path.read_text(encoding="utf-8"), Loader=CfnLoader)
    return {name: str(p.get("Default", "")) for name, p in doc["Parameters"].items()}


ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role(/(?:.*/)?)([^/]+)$")


class Checks:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def expect(self, ok, message):
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)


def one(docs, kind, name=None):
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise SystemExit(f"error: expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def subset(small, big):
    return all((big or {}).get(k) == v for k, v in (small or {}).items())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered")
    parser.add_argument("--aws-dir", default=str(REPO / "deploy" / "aws"))
    parser.add_argument("--dockerfile", default=str(REPO / "Dockerfile"))
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(pathlib.Path(args.rendered).read_text(encoding="utf-8")) if d]
    aws = pathlib.Path(args.aws_dir)
    irsa = defaults(aws / "member-role-irsa.yaml")
    hub = defaults(aws / "hub-role.yaml")
    c = Checks()

    sa = one(docs, "ServiceAccount")
    workloads = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]
    if len(workloads) != 1:
        raise SystemExit(f"error: expected one Deployment or StatefulSet, found {len(workloads)}")
    deployment = workloads[0]
    sharded = deployment["kind"] == "StatefulSet"
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    namespace = sa["metadata"].get("namespace")

    # IRSA: the trust the templates set up is for this ServiceAccount.
    for name, params in (("member-role-irsa.yaml", irsa), ("hub-role.yaml", hub)):
        c.expect(params["ServiceAccountNamespace"] == namespace,
                 f"{name} ServiceAccountNamespace {params['ServiceAccountNamespace']!r} != the ServiceAccount's namespace {namespace!r}")
        c.expect(params["ServiceAccountName"] == sa["metadata"]["name"],
                 f"{name} ServiceAccountName {params['ServiceAccountName']!r} != the ServiceAccount {sa['metadata']['name']!r}")
    c.expect(hub["MemberRoleName"] == irsa["RoleName"] and hub["MemberRolePath"] == irsa["RolePath"],
             "hub-role.yaml's MemberRoleName/MemberRolePath differ from the member roles' RoleName/RolePath")
    c.expect(spec.get("serviceAccountName") == sa["metadata"]["name"],
             f"the Deployment runs as {spec.get('serviceAccountName')!r}, not the ServiceAccount {sa['metadata']['name']!r}")
    c.expect(deployment["metadata"].get("namespace") == namespace, "the Deployment and the ServiceAccount are in different namespaces")

    role_arn = (sa["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
    m = ROLE_ARN.match(role_arn)
    c.expect(m is not None, f"the ServiceAccount's eks.amazonaws.com/role-arn {role_arn!r} is not an IAM role ARN")
    if m:
        allowed = {(irsa["RolePath"], irsa["RoleName"]), ("/", hub["RoleName"])}
        c.expect((m.group(2), m.group(3)) in allowed,
                 f"the ServiceAccount's role {role_arn!r} is neither the IRSA member role "
                 f"({irsa['RolePath']}{irsa['RoleName']}) nor the hub role ({hub['RoleName']})")

    # The config: where the pod reads it, and what it says about AWS and Port.
    config_arg = next((a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--config=")), None)
    c.expect(config_arg is not None, "the container's args do not give --config=PATH")
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    config_mount = next((m for m in mounts.values() if config_arg and config_arg.startswith(m["mountPath"].rstrip("/") + "/")), None)
    c.expect(config_mount is not None, f"no volume is mounted where --config={config_arg} points")
    config = None
    if config_mount:
        c.expect("subPath" not in config_mount, "the config is mounted with subPath, which never sees ConfigMap updates (no hot reload)")
        cm_name = (volumes.get(config_mount["name"], {}).get("configMap") or {}).get("name")
        cm = one(docs, "ConfigMap", cm_name)
        key = config_arg[len(config_mount["mountPath"].rstrip("/")) + 1:]
        c.expect(key in (cm.get("data") or {}), f"ConfigMap {cm_name} has no key {key!r}")
        config = yaml.safe_load(cm["data"].get(key, "{}"))
    if config:
        accounts = (config.get("source") or {}).get("accounts") or {}
        c.expect((config.get("source") or {}).get("type") == "aws", "the config's source is not aws")
        member_auth = accounts.get("memberAuth", "auto")
        role_name, role_path = irsa["RoleName"], irsa["RolePath"]
        if m and (m.group(2), m.group(3)) == ("/", hub["RoleName"]) and hub["RoleName"] != irsa["RoleName"]:
            c.expect(member_auth == "assumeRole", "with the hub role, memberAuth must be assumeRole (hub-and-spoke)")
        else:
            c.expect(member_auth in ("webIdentity", "auto"), f"with IRSA into member roles, memberAuth {member_auth!r} must be webIdentity or auto")
        arns = [accounts["accountRoleArn"]] if "accountRoleArn" in accounts else list(accounts.get("accountRoleArns") or [])
        for arn in arns:
            am = ROLE_ARN.match(arn)
            c.expect(am is not None and (am.group(2), am.group(3)) == (role_path, role_name),
                     f"the config's role {arn!r} is not the templates' member role {role_path}{role_name}")
        catalog = config.get("catalog") or {}
        for file_key in ("clientIdFile", "clientSecretFile"):
            path = catalog.get(file_key, "")
            mount = next((mt for mt in mounts.values() if path.startswith(mt["mountPath"].rstrip("/") + "/")), None)
            secret = (volumes.get(mount["name"], {}).get("secret") or {}).get("secretName") if mount else None
            c.expect(secret is not None, f"catalog.{file_key} {path!r} is not in a mounted Secret")
        listen = next((a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--listen=")), "")
        c.expect(listen.startswith("0.0.0.0:"), f"--listen={listen} is not reachable from outside the pod")
        cache = ((config.get("watch") or {}).get("cacheLimitMiB", 512))
        limit = container["resources"]["limits"]["memory"]
        limit_mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
        c.expect(limit_mib >= cache + 256, f"memory limit {limit} leaves under 256 MiB beside watch.cacheLimitMiB {cache}")
    else:
        listen = ""

    # Ports, probes, labels.
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    metrics = ports.get("metrics")
    c.expect(listen.endswith(f":{metrics}"), f"--listen={listen} is not the metrics port {metrics}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        c.expect(get.get("path") == path and get.get("port") in ("metrics", metrics), f"{probe} is not {path} on the metrics port")
    annotations = pod["metadata"].get("annotations") or {}
    c.expect(annotations.get("prometheus.io/port") == str(metrics), "prometheus.io/port is not the metrics port")
    labels = pod["metadata"].get("labels") or {}
    if sharded:
        # Each replica one shard: the count it is told is the StatefulSet's, its index its ordinal.
        replicas = deployment["spec"].get("replicas")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        shard = (config or {}).get("shard") or {}
        c.expect(shard.get("index") == "auto", f"shard.index {shard.get('index')!r} is not auto (from the pod name)")
        c.expect(shard.get("count") == "${TIDEMARK_SHARD_COUNT}", f"shard.count {shard.get('count')!r} is not ${{TIDEMARK_SHARD_COUNT}}")
        c.expect(env.get("TIDEMARK_SHARD_COUNT") == str(replicas),
                 f"TIDEMARK_SHARD_COUNT {env.get('TIDEMARK_SHARD_COUNT')!r} is not the replicas {replicas}")
        c.expect(deployment["spec"].get("podManagementPolicy") == "Parallel", "shards start one by one (podManagementPolicy is not Parallel)")
        governing = one(docs, "Service", deployment["spec"].get("serviceName"))
        c.expect(governing["spec"].get("clusterIP") == "None", "the StatefulSet's serviceName is not a headless Service")
        c.expect(subset(governing["spec"]["selector"], labels), "the headless Service does not select the pods")
        service = one(docs, "Service", "tidemark-metrics")
    else:
        c.expect(deployment["spec"].get("replicas") == 1, "more than one replica: two writers of one integration")
        c.expect((deployment["spec"].get("strategy") or {}).get("type") == "Recreate", "a rolling update runs two writers at once")
        service = one(docs, "Service")
    c.expect(subset(service["spec"]["selector"], labels), "the Service does not select the pod")
    sport = next((p for p in service["spec"]["ports"] if p["name"] == "metrics"), None)
    c.expect(sport is not None and sport.get("targetPort") in ("metrics", metrics), "the Service has no metrics port aimed at the container's")
    c.expect(service["spec"].get("publishNotReadyAddresses") is True, "metrics of a not-ready pod would not be scraped")
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    for sm in monitors:
        c.expect(subset(sm["spec"]["selector"]["matchLabels"], service["metadata"].get("labels")), "the ServiceMonitor does not select the Service")
        c.expect(all(e.get("port") == "metrics" for e in sm["spec"]["endpoints"]), "the ServiceMonitor scrapes another port")

    policy = one(docs, "NetworkPolicy")
    c.expect(subset(policy["spec"]["podSelector"].get("matchLabels"), labels), "the NetworkPolicy does not select the pod")
    c.expect(sorted(policy["spec"].get("policyTypes", [])) == ["Egress", "Ingress"], "the NetworkPolicy does not restrict both directions")
    ingress_ports = [p.get("port") for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])]
    c.expect(ingress_ports == [metrics] or ingress_ports == ["metrics"], f"ingress allows {ingress_ports}, not only the metrics port")
    egress = sorted((p.get("port"), p.get("protocol", "TCP")) for rule in policy["spec"].get("egress", []) for p in rule.get("ports", []))
    c.expect(egress == [(53, "TCP"), (53, "UDP"), (443, "TCP")], f"egress allows {egress}, not only DNS and HTTPS")
    c.expect(all("to" not in rule or rule["to"] for rule in policy["spec"].get("egress", [])), "an egress rule has an empty `to`")

    # The image: its user and port are the manifests'.
    dockerfile = pathlib.Path(args.dockerfile).read_text(encoding="utf-8")
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    ctx = spec.get("securityContext") or {}
    c.expect(user[-1:] == [f"{ctx.get('runAsUser')}:{ctx.get('runAsGroup')}"],
             f"the Dockerfile's last USER {user[-1:]} is not the pod's runAsUser:runAsGroup")
    exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
    c.expect(exposed == [str(metrics)], f"the Dockerfile exposes {exposed}, not the metrics port {metrics}")

    for f in c.failures:
        print(f"{args.rendered}: {f}", file=sys.stderr)
    print(f"consistency {args.rendered}: {c.passed} passed, {len(c.failures)} failed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
