#!/usr/bin/env bash
# `make strict` (part of `make test`): validates every render and injected
# pod against the strict OpenAPI schemas of each Kubernetes minor each
# catalog release supports (check.py says how). Installs what it needs from
# PyPI once, under ~/.cache/keelson/strict: kubernetes-validate 1.37.0 (the
# schemas of 1.25 on, with jsonschema and PyYAML) and 1.31.0 (1.22 to 1.24).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=schemas.sh
source e2e/strict/schemas.sh
echo "==> building keelson"
cargo build -q --locked -p keelson-operator --bin keelson
echo "==> strict schema check: every render and injected pod at every supported Kubernetes minor"
PYTHONPATH="$cache/kubernetes-validate-1.37.0" python3 e2e/strict/check.py target/debug/keelson \
  "$cache/kubernetes-validate-1.31.0" "$cache/kubernetes-validate-1.37.0"
