#!/usr/bin/env python3
"""Renders a kustomization of deploy/kubernetes without kustomize, for checks on machines that
have neither kustomize nor kubectl (neither is packaged for the registries CI installs from).

It implements only the kustomize features these kustomizations use, and refuses anything else,
so that it cannot silently render something kustomize would render differently:
  resources (files and folders with a kustomization.yaml), namespace, images (newName, newTag,
  digest), configMapGenerator (files, literals; behavior create / replace / merge) with
  generatorOptions.disableNameSuffixHash: true, and patches given inline or by path as JSON 6902
  operations (add, replace, remove, test) with a target of kind and name.
.ci/lint-deploy compares its output with `kubectl kustomize` wherever kubectl is installed.

Usage: deploy/kubernetes/render.py DIR > rendered.yaml      (needs PyYAML, in .venv)
"""

import copy
import pathlib
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator",
         "generatorOptions", "patches"}
# Kinds kustomize's `namespace:` leaves alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}


class RenderError(Exception):
    pass


def load_kustomization(folder):
    path = folder / "kustomization.yaml"
    if not path.exists():
        raise RenderError(f"{folder}: no kustomization.yaml")
    k = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(k) - KNOWN
    if unknown:
        raise RenderError(f"{path}: render.py does not implement {sorted(unknown)}; use kustomize")
    return path, k


def key(doc):
    meta = doc.get("metadata") or {}
    return (doc.get("kind"), meta.get("name"))


def render(folder):
    folder = pathlib.Path(folder)
    path, k = load_kustomization(folder)
    docs = []
    for entry in k.get("resources") or []:
        target = (folder / entry).resolve()
        if target.is_dir():
            docs += render(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text(encoding="utf-8")) if d]

    options = k.get("generatorOptions") or {}
    for gen in k.get("configMapGenerator") or []:
        if options.get("disableNameSuffixHash") is not True:
            raise RenderError(f"{path}: only generatorOptions.disableNameSuffixHash: true is implemented")
        data = {}
        for f in gen.get("files") or []:
            name, _, source = f.partition("=") if "=" in f else (pathlib.Path(f).name, "", f)
            data[name] = (folder / source).read_text(encoding="utf-8")
        for lit in gen.get("literals") or []:
            name, _, value = lit.partition("=")
            data[name] = value
        behavior = gen.get("behavior", "create")
        existing = [d for d in docs if key(d) == ("ConfigMap", gen["name"])]
        if behavior == "create":
            if existing:
                raise RenderError(f"{path}: ConfigMap {gen['name']} exists; use behavior replace or merge")
            docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
        elif behavior in ("replace", "merge"):
            if not existing:
                raise RenderError(f"{path}: no ConfigMap {gen['name']} to {behavior}")
            cm = existing[0]
            cm["data"] = data if behavior == "replace" else {**(cm.get("data") or {}), **data}
        else:
            raise RenderError(f"{path}: configMapGenerator behavior {behavior!r}")

    for patch in k.get("patches") or []:
        target = patch.get("target") or {}
        if set(target) - {"kind", "name"} or "kind" not in target or "name" not in target:
            raise RenderError(f"{path}: patch targets must give exactly kind and name")
        text = patch["patch"] if "patch" in patch else (folder / patch["path"]).read_text(encoding="utf-8")
        ops = yaml.safe_load(text)
        if not isinstance(ops, list):
            raise RenderError(f"{path}: only JSON 6902 patches (a list of operations) are implemented")
        matches = [d for d in docs if key(d) == (target["kind"], target["name"])]
        if not matches:
            raise RenderError(f"{path}: no {target['kind']} {target['name']} to patch")
        for doc in matches:
            for op in ops:
                apply_op(doc, op, path)

    for image in k.get("images") or []:
        for doc in docs:
            for container in containers(doc):
                name, _ = split_image(container.get("image", ""))
                if name != image["name"]:
                    continue
                new = image.get("newName", name)
                if "digest" in image:
                    new += "@" + image["digest"]
                elif "newTag" in image:
                    new += ":" + str(image["newTag"])
                else:
                    new += split_image(container["image"])[1]
                container["image"] = new

    if "namespace" in k:
        for doc in docs:
            if doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = k["namespace"]
    return docs


def split_image(image):
    """name, and the rest (":tag", "@digest" or "")."""
    at = image.find("@")
    if at >= 0:
        return image[:at], image[at:]
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def containers(doc):
    spec = (((doc.get("spec") or {}).get("template") or {}).get("spec") or {})
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def pointer(path):
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_op(doc, op, where):
    parts = pointer(op["path"])
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[index]
        elif kind == "test":
            if parent[index] != op["value"]:
                raise RenderError(f"{where}: test failed at {op['path']}")
        else:
            raise RenderError(f"{where}: JSON patch op {kind!r} is not implemented")
        return
    if kind in ("add", "replace"):
        if kind == "replace" and last not in parent:
            raise RenderError(f"{where}: replace of a missing {op['path']}")
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[last]
    elif kind == "test":
        if parent.get(last) != op["value"]:
            raise RenderError(f"{where}: test failed at {op['path']}")
    else:
        raise RenderError(f"{where}: JSON patch op {kind!r} is not implemented")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        docs = render(sys.argv[1])
    except (RenderError, KeyError, IndexError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
