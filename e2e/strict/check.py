#!/usr/bin/env python3
"""Strict schema check of everything Keelson renders or injects.

The e2e cluster is Kubernetes 1.20, which silently drops fields it does not
know (a native sidecar's `restartPolicy` vanishes there). So every object
Keelson renders, for every catalog release and option set, and every pod its
injector produces (the injection golden files), is validated here against
the OpenAPI schemas of each Kubernetes minor the release supports, in strict
mode: an unknown field is an error, as are a wrong type or a missing
required field. The schemas are those the PyPI package kubernetes-validate
carries (1.22 to 1.24 from its 1.31.0 release, 1.25 on from its newest).

A release supports its chart's floor (`keelson versions`) up to the newest
minor the schemas cover. Pods with a native sidecar (an init container with
`restartPolicy`) are checked from 1.29, where native sidecars are on by
default; below, Linkerd's chart refuses none, and the API server would drop
the field. Custom resources (no built-in schema) are skipped.

Before anything else the check proves it can fail: a Deployment with an
unknown field, and a native-sidecar pod at 1.27, must both be refused.

Usage: check.py <keelson binary> <schemas: old dir> <schemas: new dir>
"""

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

import jsonschema
import referencing
import yaml

GOLDEN_INJECT = "operator/tests/golden/inject"

# The option sets of the rendering golden files: spec fields besides `version`.
with open("operator/tests/option-sets.yaml") as f:
    OPTION_SETS = yaml.safe_load(f)

NATIVE_SIDECARS = (1, 29)


class Loader(yaml.SafeLoader):
    """YAML 1.1, as kubectl reads it, but timestamps stay strings (as they
    do for kubectl, which reads YAML into JSON)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class Schemas:
    """The strict schemas of one Kubernetes minor, with compiled validators."""

    def __init__(self, folder):
        self.folder = folder
        defs = self._load("_definitions.json")
        resource = referencing.Resource.from_contents(defs)
        self.registry = resource @ referencing.Registry()
        self.validators = {}

    def _load(self, name):
        with open(os.path.join(self.folder, name)) as f:
            return json.load(f)

    def validator(self, api_version, kind):
        """None for a kind without a built-in schema (a custom resource)."""
        key = (api_version, kind)
        if key not in self.validators:
            # rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
            group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            name = f"{kind.lower()}-{group_version}.json"
            path = os.path.join(self.folder, name)
            if os.path.exists(path):
                schema = self._load(name)
                self.validators[key] = jsonschema.Draft202012Validator(schema, registry=self.registry)
            else:
                self.validators[key] = None
        return self.validators[key]

    def errors(self, obj):
        validator = self.validator(obj["apiVersion"], obj["kind"])
        if validator is None:
            return None
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(obj)]


def schema_folders(old, new):
    """Minor -> folder of its strict schemas, the newest package first."""
    out = {}
    for root in (old, new):
        base = os.path.join(root, "kubernetes_validate", "kubernetes-json-schema")
        for name in os.listdir(base):
            m = re.match(r"^v1\.(\d+)\.0-local-strict$", name)
            if m:
                out[(1, int(m.group(1)))] = os.path.join(base, name)
    return out


def render(keelson, version, options, minor):
    cp = {"apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane", "metadata": {"name": "linkerd"},
          "spec": dict(options, version=version)}
    out = subprocess.run([keelson, "render", "-f", "-", "--kubernetes-version", f"1.{minor}"],
                         input=json.dumps(cp), capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.load_all(out, Loader=Loader) if d]


def has_native_sidecar(pod):
    return any("restartPolicy" in c for c in pod.get("spec", {}).get("initContainers", []))


def self_test(schemas):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                      "metadata": {"labels": {"a": "b"}},
                      "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Always"}]}}}}
    errors = schemas[(1, 31)].errors(deployment)
    if not errors or "imagePullPolicyy" not in " ".join(errors):
        sys.exit(f"self-test: a Deployment with an unknown field passed: {errors}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "linkerd-proxy", "image": "i", "restartPolicy": "Always"}],
        "containers": [{"name": "c", "image": "i"}]}}
    if not schemas[(1, 27)].errors(pod) or schemas[(1, 29)].errors(pod):
        sys.exit("self-test: a native sidecar must be refused at 1.27 and accepted at 1.29")
    print("    self-test: an unknown field and a 1.27 native sidecar are refused")


def check(task):
    """Validates one release at one minor; returns (checked, failures, skipped)."""
    keelson, version, minor, folder, pods = task
    schemas = Schemas(folder)
    objects = []
    for set_name, options in OPTION_SETS.items():
        objects += [(f"{set_name} {o['kind']}/{o['metadata']['name']}", o)
                    for o in render(keelson, version, options, minor[1])]
    objects += [(f"injected {name}", pod) for name, pod in pods
                if minor >= NATIVE_SIDECARS or not has_native_sidecar(pod)]
    seen, checked, failures, skipped = set(), 0, [], set()
    for what, obj in objects:
        key = json.dumps(obj, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        errors = schemas.errors(obj)
        if errors is None:
            skipped.add(f"{obj['apiVersion']} {obj['kind']}")
            continue
        checked += 1
        failures += [f"{version} at Kubernetes 1.{minor[1]}: {what}: {e}" for e in errors]
    return checked, failures, skipped


def main():
    keelson, old, new = sys.argv[1:4]
    started = time.time()
    folders = schema_folders(old, new)
    newest = max(folders)
    self_test({minor: Schemas(folders[minor]) for minor in [(1, 27), (1, 29), (1, 31)]})

    tasks = []
    for line in subprocess.run([keelson, "versions"], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        version, _, floor = line.split("\t")
        floor = tuple(map(int, re.search(r"(\d+)\.(\d+)", floor).groups()))
        minors = [m for m in sorted(folders) if floor <= m <= newest]
        pods = []
        for name in sorted(os.listdir(GOLDEN_INJECT)):
            if name.startswith(version + "-"):
                with open(os.path.join(GOLDEN_INJECT, name)) as f:
                    pods.append((name, yaml.load(f, Loader=Loader)))
        print(f"    {version}: Kubernetes 1.{minors[0][1]} to 1.{minors[-1][1]}, "
              f"{len(OPTION_SETS)} option sets and {len(pods)} injected pods")
        tasks += [(keelson, version, minor, folders[minor], pods) for minor in minors]

    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(check, tasks)
    checked = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]
    skipped = set().union(*(r[2] for r in results))
    print(f"    {checked} validations in {time.time() - started:.0f}s; "
          f"no built-in schema (skipped): {', '.join(sorted(skipped)) or 'none'}")
    for f in failures[:50]:
        print("  " + f)
    if failures:
        sys.exit(f"{len(failures)} schema violations")


if __name__ == "__main__":
    main()
