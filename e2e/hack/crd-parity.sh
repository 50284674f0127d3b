#!/usr/bin/env bash
# Maintainer tool: compares the CRDs Keelson installs with Linkerd's
# linkerd-crds chart, fact by fact (crd-parity.py says what a fact is), for
# each catalog release at its upstream tag. Not part of `make test`: it needs
# a linkerd2 checkout and a helm binary (downloaded once, see helm.sh).
#
#   e2e/hack/crd-parity.sh <linkerd2 checkout> [--details] [tag ...]
#
# The checkout may be bare (a mirror): the chart is read with git archive.
# Without tags, every release of `keelson versions` is compared. Each is
# compared at Kubernetes 1.31 (KUBERNETES=1.23 for another), where every CEL
# rule is accepted; below 1.25 the CEL rules show as missing, as the API
# server there cannot take them. The figures in README.md ("CRDs as Linkerd
# has them") come from this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 <linkerd2 checkout> [--details] [tag ...]" >&2; exit 2; }
upstream=$1; shift
details=()
if [ "${1:-}" = --details ]; then details=(--details); shift; fi
tags=("$@")
# shellcheck source=upstream.sh
source e2e/hack/upstream.sh
status=0
for tag in "${tags[@]}"; do
  echo "==> $tag" >&2
  chart=$(chart_at "$tag" linkerd-crds)
  dir="$scratch/$tag"
  # Gateway API on (edge-24.11.8 installs it whatever the value).
  "$HELM" template linkerd-crds "$chart" --namespace linkerd \
    --set installGatewayAPI=true > "$dir/upstream.yaml"
  printf 'apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: linkerd}\nspec: {version: %s, installGatewayApi: true}\n' \
    "$tag" > "$dir/cp.yaml"
  "$keelson" render -f "$dir/cp.yaml" --kubernetes-version "${KUBERNETES:-1.31}" > "$dir/ours.yaml"
  python3 e2e/hack/crd-parity.py "$dir/upstream.yaml" "$dir/ours.yaml" --label "$tag" "${details[@]}" || status=1
done
exit $status
