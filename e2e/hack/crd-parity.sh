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
# compared at Kubernetes 1.31, where every CEL rule is accepted; the figures
# in README.md ("CRDs as Linkerd has them") come from this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 <linkerd2 checkout> [--details] [tag ...]" >&2; exit 2; }
upstream=$1; shift
details=()
if [ "${1:-}" = --details ]; then details=(--details); shift; fi
# shellcheck source=helm.sh
source e2e/hack/helm.sh
echo "==> building keelson" >&2
cargo build -q -p keelson-operator --bin keelson
keelson=target/debug/keelson
tags=("$@")
[ ${#tags[@]} -gt 0 ] || mapfile -t tags < <("$keelson" versions | cut -f1)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for tag in "${tags[@]}"; do
  echo "==> $tag" >&2
  dir="$scratch/$tag"
  mkdir -p "$dir"
  git -C "$upstream" archive "$tag" charts/partials charts/linkerd-crds | tar -x -C "$dir"
  "$HELM" dependency build "$dir/charts/linkerd-crds" >/dev/null
  # Gateway API on, under the value name of each era.
  "$HELM" template linkerd-crds "$dir/charts/linkerd-crds" --namespace linkerd \
    --set installGatewayAPI=true > "$dir/upstream.yaml"
  printf 'apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: linkerd}\nspec: {version: %s, installGatewayApi: true}\n' \
    "$tag" > "$dir/cp.yaml"
  "$keelson" render -f "$dir/cp.yaml" --kubernetes-version 1.31 > "$dir/ours.yaml"
  python3 e2e/hack/crd-parity.py "$dir/upstream.yaml" "$dir/ours.yaml" --label "$tag" "${details[@]}" || status=1
done
exit $status
