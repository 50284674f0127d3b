#!/usr/bin/env bash
# Maintainer tool: compares the key set of `linkerd-config`'s `values` as
# Keelson renders it with the one Linkerd's chart writes (`toYaml .Values`),
# for each catalog release at its upstream tag and each option set of the
# golden files (default, ha, custom), given as the equivalent Helm values.
# Values that differ are listed too, for review: images and versions are
# the catalog's (the chart leaves them to the CLI), and certificates differ.
#
#   e2e/hack/config-parity.sh <linkerd2 checkout> [tag ...]
#
# Exit status: non-zero when a key set differs. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 <linkerd2 checkout> [tag ...]" >&2; exit 2; }
upstream=$1; shift
tags=("$@")
# shellcheck source=upstream.sh
source e2e/hack/upstream.sh
status=0
for tag in "${tags[@]}"; do
  chart=$(chart_at "$tag" linkerd-control-plane)
  dir="$scratch/$tag"
  while IFS='|' read -r set helm_args; do
    render_both "$tag" "$chart" "$set" "$helm_args"
    python3 - "$dir/upstream-$set.yaml" "$dir/ours-$set.yaml" "$tag $set" <<'PY' || status=1
import sys, yaml

def values(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "linkerd-config")
    return yaml.safe_load(cm["data"]["values"])

def flat(node, prefix=""):
    out = {}
    if isinstance(node, dict) and node:
        for k, v in node.items():
            out[prefix + k] = v if not isinstance(v, dict) or not v else {}
            out.update(flat(v, prefix + k + "."))
    else:
        out[prefix[:-1]] = node
    return out

theirs, ours = flat(values(sys.argv[1])), flat(values(sys.argv[2]))
missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
differ = [k for k in sorted(set(theirs) & set(ours))
          if theirs[k] != ours[k] and not isinstance(theirs[k], dict) and "PEM" not in k]
print(f"# {sys.argv[3]}: {len(theirs)} keys in the chart's, {len(ours)} in Keelson's; "
      f"{len(missing)} missing, {len(extra)} extra; {len(differ)} values differ")
for k in missing:
    print(f"  missing {k}")
for k in extra:
    print(f"  extra   {k}")
for k in differ:
    print(f"  value   {k}: chart {theirs[k]!r}, Keelson {ours[k]!r}")
sys.exit(1 if missing or extra else 0)
PY
  done <<< "$HELM_VALUES"
done
exit $status
