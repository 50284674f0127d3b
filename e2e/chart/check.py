#!/usr/bin/env python3
"""`make chart`: Keelson's Helm chart, rendered by a real helm binary.

- The default render is the plain install (`manifests/keelson.yaml`): every
  object the chart renders equals the plain one of the same kind, name and
  namespace, and every plain object is rendered, but for the namespaces and
  CRDs Helm handles itself. The hand-written Deployment template cannot
  drift from the generated plain manifest.
- The render with every value set (`every-value.yaml`) carries each value
  where it belongs.
- Both renders, and those of the value sets the templates branch on,
  validate strictly against the OpenAPI schemas of every Kubernetes minor
  from 1.22 (kubernetes-validate, as `make strict`); the Prometheus
  Operator's kinds, which have no built-in schema, are checked by shape.
- The values schema refuses what it should, naming the value.

Usage: check.py <helm binary> <schemas: old dir> <schemas: new dir>
"""

import os
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "strict"))
from check import Loader, Schemas, schema_folders  # noqa: E402

CHART = "manifests/helm/keelson"
NAMESPACE = "keelson"
FIRST_MINOR = (1, 22)


def helm(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def render(binary, *args):
    done = helm(binary, "template", "keelson", CHART, "--namespace", NAMESPACE, *args)
    if done.returncode != 0:
        sys.exit(f"helm template {' '.join(args)}: {done.stderr}")
    return [d for d in yaml.load_all(done.stdout, Loader=Loader) if d]


def key(o):
    return (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", ""))


def find(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        sys.exit(f"expected one {kind}/{name}, found {len(found)}")
    return found[0]


def unordered_names(o):
    """RBAC rules' resourceNames as sets: the chart sorts its names before
    Helm fills in the namespace."""
    if isinstance(o, dict):
        return {k: sorted(v) if k == "resourceNames" else unordered_names(v) for k, v in o.items()}
    if isinstance(o, list):
        return [unordered_names(v) for v in o]
    return o


def defaults_are_the_plain_install(objects):
    with open("manifests/keelson.yaml") as f:
        plain = {key(o): unordered_names(o) for o in yaml.load_all(f, Loader=Loader) if o}
    chart = {key(o): unordered_names(o) for o in objects}
    problems = []
    for k, o in chart.items():
        if k not in plain:
            problems.append(f"{k}: rendered by the chart, not in manifests/keelson.yaml")
        elif plain[k] != o:
            problems.append(f"{k} differs:\n  chart: {o}\n  plain: {plain[k]}")
    for k in plain:
        if k not in chart and k[0] not in ("Namespace", "CustomResourceDefinition"):
            problems.append(f"{k}: in manifests/keelson.yaml, not rendered by the chart")
    if problems:
        sys.exit("the chart's defaults are not the plain install:\n" + "\n".join(problems))
    print(f"    defaults: {len(chart)} objects, each equal to manifests/keelson.yaml's")


def every_value_lands(objects):
    with open("e2e/chart/every-value.yaml") as f:
        values = yaml.safe_load(f)
    d = find(objects, "Deployment", "keelson")
    pod = d["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    image = values["image"]
    checks = {
        "image by digest": c["image"] == f"{image['repository']}@{image['digest']}",
        "image.pullPolicy": c["imagePullPolicy"] == image["pullPolicy"],
        "imagePullSecrets": spec["imagePullSecrets"] == values["imagePullSecrets"],
        "replicas": d["spec"]["replicas"] == values["replicas"],
        "logLevel": env["RUST_LOG"]["value"] == values["logLevel"],
        "logFormat": c["args"][1:3] == ["--log-format", values["logFormat"]],
        "extraArgs": c["args"][-2:] == values["extraArgs"],
        "extraEnv": c["env"][-1] == values["extraEnv"][0],
        "webhookPort": {"name": "webhooks", "containerPort": values["webhookPort"], "protocol": "TCP"} in c["ports"]
        and f"0.0.0.0:{values['webhookPort']}" in c["args"],
        "adminPort": {"name": "admin", "containerPort": values["adminPort"], "protocol": "TCP"} in c["ports"]
        and f"0.0.0.0:{values['adminPort']}" in c["args"],
        "resources": c["resources"] == values["resources"],
        "nodeSelector": spec["nodeSelector"] == values["nodeSelector"],
        "tolerations": spec["tolerations"] == values["tolerations"],
        "affinity": spec["affinity"] == values["affinity"],
        "topologySpreadConstraints": spec["topologySpreadConstraints"] == values["topologySpreadConstraints"],
        "priorityClassName": spec["priorityClassName"] == values["priorityClassName"],
        "podAnnotations": pod["metadata"]["annotations"] == values["podAnnotations"],
        "podLabels (and the selector's labels kept)": pod["metadata"]["labels"]
        == dict(values["podLabels"], **d["spec"]["selector"]["matchLabels"]),
        "podDisruptionBudget": find(objects, "PodDisruptionBudget", "keelson")["spec"]["maxUnavailable"]
        == values["podDisruptionBudget"]["maxUnavailable"],
        "controlPlanes": env["KEELSON_CONTROL_PLANE_NAMESPACES"]["value"]
        == ",".join(cp["namespace"] for cp in values["controlPlanes"]),
        "dataPlaneNamespaces": {o["metadata"].get("namespace") for o in objects
                                if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "keelson-restart"}
        == set(values["dataPlaneNamespaces"]),
        "networkPolicy": find(objects, "NetworkPolicy", "keelson")["spec"]["ingress"][0]["from"]
        == values["networkPolicy"]["webhookFrom"],
        "linkerdWebhookShells": not any(o["metadata"]["name"].startswith("linkerd-") and
                                        o["kind"].endswith("WebhookConfiguration") for o in objects),
    }
    sm = find(objects, "ServiceMonitor", "keelson")
    metrics = find(objects, "Service", "keelson-metrics")
    checks["serviceMonitor"] = (
        sm["spec"]["endpoints"] == [{"interval": values["serviceMonitor"]["interval"], "path": "/metrics",
                                     "port": "admin"}]
        and sm["metadata"]["labels"]["release"] == "prometheus"
        and all(metrics["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
        and metrics["spec"]["ports"][0]["port"] == values["adminPort"]
        and metrics["spec"]["selector"] == d["spec"]["selector"]["matchLabels"])
    pm = find(objects, "PodMonitor", "keelson")
    checks["podMonitor"] = (
        pm["spec"]["podMetricsEndpoints"] == [{"interval": values["podMonitor"]["interval"], "path": "/metrics",
                                               "port": "admin"}]
        and pm["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"])
    missed = [name for name, ok in checks.items() if not ok]
    if missed:
        sys.exit(f"values that did not land: {missed}")
    print(f"    every value: {len(checks)} values each where it belongs")


def value_sets(binary):
    """The value sets the generated templates branch on: which objects."""
    sets = {
        "data-plane-everywhere": (["--set", "dataPlaneNamespaces={*}"],
                                  ["ClusterRoleBinding/keelson-restart"], ["RoleBinding/keelson-restart"]),
        "two-control-planes": (["--set", "controlPlanes[0].name=a,controlPlanes[0].namespace=mesh-a,"
                                         "controlPlanes[1].name=b,controlPlanes[1].namespace=mesh-b"],
                               ["RoleBinding/keelson@mesh-a", "ClusterRole/keelson-control-plane-mesh-b"],
                               ["RoleBinding/keelson@linkerd"]),
        "no-budget": (["--set", "podDisruptionBudget.enabled=false"], ["Deployment/keelson"],
                      ["PodDisruptionBudget/", "NetworkPolicy/", "ServiceMonitor/", "PodMonitor/"]),
    }
    rendered = {}
    for name, (args, want, unwanted) in sets.items():
        objects = render(binary, *args)
        have = {f"{o['kind']}/{o['metadata']['name']}@{o['metadata'].get('namespace', '')}" for o in objects}
        missing = [w for w in want if not any(h.startswith(w) for h in have)]
        extra = [u for u in unwanted if any(h.startswith(u) for h in have)]
        if missing or extra:
            sys.exit(f"{name}: missing {missing}, unexpected {extra}")
        rendered[name] = objects
    print(f"    {len(sets)} more value sets render the objects they branch on")
    return rendered


def schema_refusals(binary):
    for args, named in [
        (["--set", "replica=3"], "replica"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "image.digest=latest"], "/image/digest"),
        (["--set", "webhookPort=70000"], "/webhookPort"),
        (["--set", "serviceMonitor.interval=often"], "/serviceMonitor/interval"),
    ]:
        done = helm(binary, "template", "keelson", CHART, *args)
        if done.returncode == 0 or named not in done.stderr:
            sys.exit(f"the values schema let {args} through (or did not name {named}): {done.stderr}")
    print("    the values schema refuses 5 bad values, naming each")


def main():
    binary, old, new = sys.argv[1:4]
    for args in ([], ["-f", "e2e/chart/every-value.yaml"]):
        done = helm(binary, "lint", "--strict", CHART, *args)
        if done.returncode != 0:
            sys.exit(f"helm lint --strict {' '.join(args)}:\n{done.stdout}{done.stderr}")
    print("    helm lint --strict: clean with defaults and with every value set", flush=True)
    defaults = render(binary)
    every = render(binary, "-f", "e2e/chart/every-value.yaml")
    defaults_are_the_plain_install(defaults)
    every_value_lands(every)
    renders = {"defaults": defaults, "every-value": every, **value_sets(binary)}
    schema_refusals(binary)

    folders = schema_folders(old, new)
    minors = [m for m in sorted(folders) if m >= FIRST_MINOR]
    failures, checked, shapes = [], 0, set()
    for minor in minors:
        schemas = Schemas(folders[minor])
        for name, objects in renders.items():
            for o in objects:
                errors = schemas.errors(o)
                if errors is None:
                    shapes.add(f"{o['apiVersion']} {o['kind']}")
                    continue
                checked += 1
                failures += [f"1.{minor[1]} {name} {o['kind']}/{o['metadata']['name']}: {e}" for e in errors]
    unknown = shapes - {"monitoring.coreos.com/v1 ServiceMonitor", "monitoring.coreos.com/v1 PodMonitor"}
    if unknown:
        failures.append(f"kinds without a schema: {sorted(unknown)}")
    for f in failures[:40]:
        print("  " + f)
    if failures:
        sys.exit(f"{len(failures)} problems")
    print(f"    {checked} strict validations at Kubernetes 1.{minors[0][1]} to 1.{minors[-1][1]}; "
          f"checked by shape: {', '.join(sorted(shapes))}")


if __name__ == "__main__":
    main()
