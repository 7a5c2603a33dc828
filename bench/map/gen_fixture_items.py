#!/usr/bin/env python3
"""Writes N Cloud Control-shaped items made from the realistic full models in
tests/fixtures/aws/<Type>/input.json, cycling through the kinds (all of them, or the ones named
with --kinds), each item's Identifier made unique with a numeric suffix. Output as gen_items.py:
JSON lines of `{"TypeName", "Identifier", "Properties": "<JSON string>"}`. Deterministic.
Usage: gen_fixture_items.py N [--kinds AWS::S3::Bucket,AWS::EC2::Instance] > items.jsonl"""
import json
import pathlib
import sys

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "aws"


def models(kinds):
    out = []
    for folder in sorted(FIXTURES.iterdir()):
        if not (folder / "input.json").is_file():
            continue
        kind = folder.name.replace("_", "::")
        if kinds and kind not in kinds:
            continue
        for model in json.loads((folder / "input.json").read_text()):
            out.append((kind, model))
    return out


def main():
    args = sys.argv[1:]
    kinds = None
    if "--kinds" in args:
        at = args.index("--kinds")
        kinds = set(args[at + 1].split(","))
        del args[at:at + 2]
    n = int(args[0]) if args else 20000
    pool = models(kinds)
    out = sys.stdout
    for i in range(n):
        kind, model = pool[i % len(pool)]
        suffix = f"-{i // len(pool):06d}" if i >= len(pool) else ""
        props = model.get("Properties", {})
        item = {"TypeName": kind, "Identifier": f"{model['Identifier']}{suffix}",
                "Properties": json.dumps(props)}
        out.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    main()
