#!/usr/bin/env bash
# Maintainer tool: compares what Keelson renders for a ControlPlane with what
# Linkerd's linkerd-control-plane chart renders for the same values, object
# by object, for each catalog release at its upstream tag and each option set
# of the golden files (the Helm values as in config-parity.sh).
#
#   e2e/hack/render-parity.sh <linkerd2 checkout> [--details] [tag ...]
#
# Objects are matched by kind, namespace and name; Helm is given the
# release's `linkerdVersion`, as Linkerd's CLI does. Left out of the
# comparison, as deliberate differences README.md lists ("Rendering and the
# release catalog"): the objects Keelson does not render (the proxy
# injector, which Keelson's webhook replaces, and the heartbeat CronJob with
# its RBAC; the namespaces, which Helm does not render), Keelson's own labels
# and annotations and the chart's Helm ones,
# `linkerd.io/created-by`, certificates and keys (generated in the cluster)
# and what derives from them (CA bundles, `linkerd.io/trust-root-sha256`),
# checksum annotations, ports' `protocol: TCP` and webhooks'
# `timeoutSeconds: 10` (the API's defaults, which Keelson states), a `null`
# the chart renders for an empty field, `linkerd-config` (config-parity.sh
# compares it) and CRDs (crd-parity.sh). Every other leaf that differs is
# counted per object; --details lists them.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 <linkerd2 checkout> [--details] [tag ...]" >&2; exit 2; }
upstream=$1; shift
details=""
if [ "${1:-}" = --details ]; then details=1; shift; fi
tags=("$@")
# shellcheck source=upstream.sh
source e2e/hack/upstream.sh
status=0
for tag in "${tags[@]}"; do
  chart=$(chart_at "$tag" linkerd-control-plane)
  dir="$scratch/$tag"
  while IFS='|' read -r set helm_args; do
    render_both "$tag" "$chart" "$set" "$helm_args"
    DETAILS=$details python3 - "$dir/upstream-$set.yaml" "$dir/ours-$set.yaml" "$tag $set" <<'PY' || status=1
import json, os, sys, yaml

SKIPPED_KINDS = {"CustomResourceDefinition", "Namespace"}

def not_rendered(name):
    return "proxy-injector" in name or "heartbeat" in name

def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}

def leaves(node, prefix, out):
    if isinstance(node, dict):
        for k, v in node.items():
            leaves(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            # Containers, volumes, ports, env by name where they have one.
            key = v.get("name", i) if isinstance(v, dict) else i
            leaves(v, f"{prefix}[{key}]", out)
    else:
        out[prefix] = node

def ignored(path, chart, keelson, key):
    if chart in (None, "<none>") and keelson in (None, "<none>"):
        return True
    # The CNI plugin's configuration is compared (as parsed JSON); other
    # ConfigMaps' and Secrets' data are certificates or linkerd-config.
    if key == ("ConfigMap", key[1], "linkerd-cni-config") and path.startswith("data."):
        return False
    deliberate = (path.endswith(".protocol") and chart == "<none>" and keelson == "TCP") or (
        path.endswith(".timeoutSeconds") and path.startswith("webhooks") and chart == "<none>" and keelson == 10)
    return (deliberate or path.startswith("metadata.labels.helm.sh/") or ".keelson.dev/" in path
            or path.startswith("metadata.labels.keelson.dev/") or "linkerd.io/created-by" in path
            or "checksum/" in path or "linkerd.io/trust-root-sha256" in path
            or path.startswith("data.") or path.startswith("stringData.")
            or path.endswith("clientConfig.caBundle")
            or path.startswith("metadata.labels.app.kubernetes.io/"))

theirs, ours = load(sys.argv[1]), load(sys.argv[2])
missing = [k for k in theirs if k not in ours and not not_rendered(k[2]) and k[0] not in SKIPPED_KINDS
           and k[2] != "linkerd-config"]
extra = [k for k in ours if k not in theirs and k[0] not in SKIPPED_KINDS]
differing = {}
for key in sorted(set(theirs) & set(ours)):
    if key[0] in SKIPPED_KINDS or key[2] == "linkerd-config":
        continue
    a, b = {}, {}
    for obj, out in ((theirs[key], a), (ours[key], b)):
        if key[2] == "linkerd-cni-config":
            obj = json.loads(json.dumps(obj))
            obj["data"]["cni_network_config"] = json.loads(obj["data"]["cni_network_config"])
        leaves(obj, "", out)
    diffs = [p for p in sorted(set(a) | set(b))
             if a.get(p, "<none>") != b.get(p, "<none>")
             and not ignored(p, a.get(p, "<none>"), b.get(p, "<none>"), key)]
    if diffs:
        differing[key] = [(p, a.get(p, "<none>"), b.get(p, "<none>")) for p in diffs]
compared = len([k for k in set(theirs) & set(ours) if k[0] not in SKIPPED_KINDS and k[2] != "linkerd-config"])
print(f"# {sys.argv[3]}: {compared} objects compared, {compared - len(differing)} identical, "
      f"{len(differing)} differ; {len(missing)} missing, {len(extra)} extra")
for k in missing:
    print(f"  missing {'/'.join(k)}")
for k in extra:
    print(f"  extra   {'/'.join(k)}")
for k, diffs in differing.items():
    print(f"  differs {'/'.join(k)}: {len(diffs)} leaves")
    if os.environ.get("DETAILS"):
        for p, a, b in diffs:
            print(f"      {p}: chart {a!r}, Keelson {b!r}")
sys.exit(1 if missing or extra or differing else 0)
PY
  done <<< "$HELM_VALUES"
done
exit $status
