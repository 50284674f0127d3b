#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from Debian's
# Kubernetes 1.20.2 source (see shared/TEST-CLUSTER.md), once per version: the
# binaries are cached under $KEELSON_CACHE (default ~/.cache/keelson) and later
# runs return at once. Also installs the Debian packages the e2e cluster needs.
set -euo pipefail

K8S_VERSION=1.20.2
DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${KEELSON_CACHE:-$HOME/.cache/keelson}"
OUT="$CACHE/k8s-$K8S_VERSION"
BINS=(kube-apiserver kube-controller-manager kube-scheduler)

say() { printf '==> [kubernetes %s] %s\n' "$K8S_VERSION" "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
  local missing=()
  for p in golang-1.19-go etcd-server rsync jq golang-github-modern-go-reflect2-dev dpkg-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_deb_src() {
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    say "adding a deb-src entry for bookworm"
    as_root tee /etc/apt/sources.list.d/keelson-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    as_root apt-get update -qq
  fi
}

have_bins() {
  for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}

ensure_packages
if have_bins; then
  say "cached binaries found in $OUT"
  exit 0
fi

ensure_deb_src
# Several test processes may ask at once: one builds, the others wait.
mkdir -p "$CACHE"
exec 9>"$CACHE/k8s-$K8S_VERSION.lock"
flock 9
if have_bins; then exit 0; fi

WORK="$CACHE/src-$K8S_VERSION"
rm -rf "$WORK"; mkdir -p "$WORK"
cd "$WORK"
say "downloading the Debian source package kubernetes=$DEB_VERSION"
apt-get source --download-only -qq "kubernetes=$DEB_VERSION" >/dev/null
dpkg-source --no-check -x ./*.dsc src >/dev/null
cd src

say "replacing vendored modern-go/reflect2 with Debian's v1.0.2 (fixes a crash under Go >= 1.18)"
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. vendor/github.com/modern-go/reflect2/
find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete

say "building ${BINS[*]} (about 9 minutes on 2 cores, once per machine)"
start=$(date +%s)
(
  export PATH="/usr/lib/go-1.19/bin:$PATH" GOFLAGS=-mod=vendor GO111MODULE=on
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" 2>&1 |
    while IFS= read -r line; do printf '    %s\n' "$line" >&2; done
) &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 30
  kill -0 "$pid" 2>/dev/null && say "still building... $(( $(date +%s) - start ))s elapsed"
done
wait "$pid"

mkdir -p "$OUT.tmp"
for b in "${BINS[@]}"; do cp "_output/bin/$b" "$OUT.tmp/$b"; done
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
cd /; rm -rf "$WORK"
say "built in $(( $(date +%s) - start ))s, cached in $OUT"
