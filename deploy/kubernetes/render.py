#!/usr/bin/env python3
"""Renders a kustomization of deploy/kubernetes without kustomize, for checks on machines that
have neither kustomize nor kubectl (neither is packaged for the registries CI installs from).

It implements only the kustomize features these kustomizations use, and refuses anything else,
so that it cannot silently render something kustomize would render differently:
  resources (files and folders with a kustomization.yaml), namespace, images (newName, newTag,
  digest), configMapGenerator (files, literals; behavior create / replace / merge) with
  generatorOptions.disableNameSuffixHash: true, patches given inline or by path as JSON 6902
  operations (add, replace, remove, test) with a target of kind and name, and replacements of one
  scalar (source kind, name, fieldPath) into fields selected by kind and name, whose paths may
  pick list items by `[name=value]`; a string field receives the value as a string.
.ci/lint-deploy compares its output with `kubectl kustomize` wherever kubectl is installed.

Usage: deploy/kubernetes/render.py DIR > rendered.yaml      (needs PyYAML, in .venv)
"""

import copy
import pathlib
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator",
         "generatorOptions", "patches", "replacements"}
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

    for replacement in k.get("replacements") or []:
        replace(docs, replacement, path)

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


def field_path(text):
    """kustomize's dotted field path: `a.b.[name=x].c` → ["a", "b", ("name", "x"), "c"]."""
    parts = []
    for part in text.split("."):
        if part.startswith("[") and part.endswith("]") and "=" in part:
            k, _, v = part[1:-1].partition("=")
            parts.append((k, v))
        else:
            parts.append(part)
    return parts


def walk(node, parts, where):
    """The parent of the field `parts` names, and the field's key or index."""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, tuple):
            if not isinstance(node, list):
                raise RenderError(f"{where}: [{part[0]}={part[1]}] on something that is not a list")
            found = [j for j, item in enumerate(node) if isinstance(item, dict) and item.get(part[0]) == part[1]]
            if len(found) != 1:
                raise RenderError(f"{where}: [{part[0]}={part[1]}] matches {len(found)} items")
            if last:
                return node, found[0]
            node = node[found[0]]
        else:
            if not isinstance(node, dict) or part not in node:
                raise RenderError(f"{where}: no field {part!r}")
            if last:
                return node, part
            node = node[part]
    raise RenderError(f"{where}: empty field path")


def replace(docs, replacement, where):
    unknown = set(replacement) - {"source", "targets"}
    source = replacement.get("source") or {}
    if unknown or set(source) - {"kind", "name", "fieldPath"}:
        raise RenderError(f"{where}: replacements support only source {{kind, name, fieldPath}} and targets")
    matches = [d for d in docs if key(d) == (source.get("kind"), source.get("name"))]
    if len(matches) != 1:
        raise RenderError(f"{where}: replacement source {source} matches {len(matches)} objects")
    parent, field = walk(matches[0], field_path(source["fieldPath"]), where)
    value = parent[field]
    for target in replacement.get("targets") or []:
        select = target.get("select") or {}
        if set(target) - {"select", "fieldPaths"} or set(select) - {"kind", "name"}:
            raise RenderError(f"{where}: replacement targets support only select {{kind, name}} and fieldPaths")
        for doc in [d for d in docs if key(d) == (select.get("kind"), select.get("name"))]:
            for text in target.get("fieldPaths") or []:
                parent, field = walk(doc, field_path(text), where)
                parent[field] = str(value) if isinstance(parent[field], str) else copy.deepcopy(value)


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
