#!/usr/bin/env python3
"""Compares two sets of CustomResourceDefinitions fact by fact.

Maintainer tool, run by crd-parity.sh: `upstream` is Linkerd's linkerd-crds
chart rendered by helm at a tag, `ours` is what `keelson render` applies for
the same release. A schema is broken down into facts, each a (path, kind,
value) triple: a property exists, its type, a required name, an enum, a
pattern, a length or item limit, a default, a list type or map key, a CEL
rule with its message, preserve-unknown-fields, nullability, a version's
flags and printer columns. Descriptions are not facts.

For each CRD and fact kind it prints how many of upstream's facts Keelson
keeps (same path, same value) and how many facts Keelson has that upstream
lacks ("extra": a field upstream does not have, or a `nullable` it does not
allow). With --details it lists every missing and extra fact.

Exit status: 0 when every upstream fact is kept and nothing is extra, 1
otherwise, so that a maintainer can gate an import on it.
"""

import argparse
import json
import sys
from collections import defaultdict

import yaml

# Schema keywords whose value is one fact at the node's path.
VALUE_KEYWORDS = [
    "type",
    "format",
    "pattern",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "default",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "nullable",
]

# Fact kinds as the report groups them.
KINDS = [
    "property",
    "type",
    "required",
    "enum",
    "pattern",
    "format",
    "length",
    "items",
    "bounds",
    "default",
    "list/map",
    "cel",
    "one-of",
    "preserve",
    "nullable",
    "version",
    "column",
]

KIND_OF = {
    "type": "type",
    "format": "format",
    "pattern": "pattern",
    "maxLength": "length",
    "minLength": "length",
    "maxItems": "items",
    "minItems": "items",
    "maxProperties": "items",
    "minProperties": "items",
    "maximum": "bounds",
    "minimum": "bounds",
    "exclusiveMaximum": "bounds",
    "exclusiveMinimum": "bounds",
    "default": "default",
    "x-kubernetes-list-type": "list/map",
    "x-kubernetes-map-type": "list/map",
    "x-kubernetes-list-map-keys": "list/map",
    "x-kubernetes-preserve-unknown-fields": "preserve",
    "x-kubernetes-int-or-string": "type",
    "x-kubernetes-embedded-resource": "type",
    "nullable": "nullable",
}


def canonical(value):
    return json.dumps(integral(value), sort_keys=True)


def integral(value):
    """1.0 and 1 are the same bound (the API server keeps float64s)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    return value


# Top-level properties the API server handles itself for every custom
# resource (a CRD may only narrow metadata.name); upstream spells one of them
# `apiVerson` in EgressNetwork, which is not a fact worth copying.
OBJECT_FIELDS = {"apiVersion", "apiVerson", "kind", "metadata"}


def schema_facts(node, path, out):
    """Adds the facts of one schema node and its children to `out`."""
    if not isinstance(node, dict):
        return
    for keyword in VALUE_KEYWORDS:
        if keyword in node:
            value = node[keyword]
            # `nullable: false` and `preserve-unknown-fields: false` say nothing.
            if value is False and keyword in ("nullable", "x-kubernetes-preserve-unknown-fields"):
                continue
            out.add((path, KIND_OF[keyword], keyword, canonical(value)))
    if "x-kubernetes-list-map-keys" in node:
        for key in node["x-kubernetes-list-map-keys"]:
            out.add((path, "list/map", "x-kubernetes-list-map-keys", key))
    if "enum" in node:
        out.add((path, "enum", "enum", canonical(sorted(map(canonical, node["enum"])))))
    for name in node.get("required", []):
        out.add((path, "required", "required", name))
    for rule in node.get("x-kubernetes-validations", []):
        # The message is what a refused user reads: part of the fact.
        out.add((path, "cel", "rule", canonical(rule)))
    for keyword in ("oneOf", "anyOf", "allOf", "not"):
        if keyword in node:
            out.add((path, "one-of", keyword, canonical(node[keyword])))
    for name, child in (node.get("properties") or {}).items():
        if "." not in path and name in OBJECT_FIELDS:
            continue
        child_path = f"{path}.{name}"
        out.add((child_path, "property", "property", ""))
        schema_facts(child, child_path, out)
    if isinstance(node.get("items"), dict):
        schema_facts(node["items"], path + "[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        schema_facts(node["additionalProperties"], path + "{}", out)


def crd_facts(crd, storage_only):
    """The facts of a CRD: per served version (or the storage one), its
    schema's facts, its served/storage/deprecated flags and printer columns."""
    out = set()
    for version in crd["spec"]["versions"]:
        if storage_only and not version.get("storage"):
            continue
        name = version["name"]
        for flag in ("served", "storage", "deprecated"):
            if version.get(flag):
                out.add((name, "version", flag, "true"))
        for column in version.get("additionalPrinterColumns", []) or []:
            described = {k: v for k, v in column.items() if k != "description"}
            out.add((name, "column", "column", canonical(described)))
        if "status" in (version.get("subresources") or {}):
            out.add((name, "version", "status-subresource", "true"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        schema_facts(schema, name, out)
    if not storage_only:
        out.add(("", "version", "scope", crd["spec"]["scope"]))
        for short in crd["spec"]["names"].get("shortNames", []) or []:
            out.add(("", "version", "shortName", short))
    return out


def load_crds(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == "CustomResourceDefinition"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="YAML with Linkerd's CRDs (helm template output)")
    parser.add_argument("ours", help="YAML with Keelson's CRDs (keelson render output)")
    parser.add_argument("--storage-only", action="store_true", help="compare storage versions only")
    parser.add_argument("--details", action="store_true", help="list each missing and extra fact")
    parser.add_argument("--label", default="", help="printed in the heading")
    args = parser.parse_args()

    upstream, ours = load_crds(args.upstream), load_crds(args.ours)
    totals = defaultdict(lambda: [0, 0, 0])
    rows = []
    problems = []
    for name in sorted(set(upstream) | set(ours)):
        if name not in ours:
            problems.append(f"{name}: upstream has it, Keelson does not")
            continue
        if name not in upstream:
            problems.append(f"{name}: Keelson has it, upstream does not")
            continue
        theirs = crd_facts(upstream[name], args.storage_only)
        mine = crd_facts(ours[name], args.storage_only)
        counts = defaultdict(lambda: [0, 0, 0])
        for fact in theirs:
            counts[fact[1]][0] += 1
            if fact in mine:
                counts[fact[1]][1] += 1
            elif args.details:
                problems.append(f"{name}: missing {fact[1]} at {fact[0]}: {fact[2]} {fact[3]}")
        for fact in mine - theirs:
            counts[fact[1]][2] += 1
            if args.details:
                problems.append(f"{name}: extra {fact[1]} at {fact[0]}: {fact[2]} {fact[3]}")
        rows.append((name, counts))
        for kind, (a, b, c) in counts.items():
            totals[kind][0] += a
            totals[kind][1] += b
            totals[kind][2] += c

    kinds = [k for k in KINDS if k in totals]
    scope = "storage versions" if args.storage_only else "all served versions"
    print(f"# {args.label} ({scope}): kept/upstream, +extra")
    width = max([len(n) for n, _ in rows] + [5])
    print("crd".ljust(width), *(k.rjust(11) for k in kinds))

    def cell(c):
        text = f"{c[1]}/{c[0]}"
        return (text + (f" +{c[2]}" if c[2] else "")).rjust(11)

    for name, counts in rows:
        print(name.ljust(width), *(cell(counts.get(k, [0, 0, 0])) for k in kinds))
    print("total".ljust(width), *(cell(totals[k]) for k in kinds))
    kept = sum(t[1] for t in totals.values())
    total = sum(t[0] for t in totals.values())
    extra = sum(t[2] for t in totals.values())
    print(f"kept {kept} of {total} upstream facts; {extra} extra")
    for p in problems:
        print("  " + p)
    return 0 if kept == total and extra == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
