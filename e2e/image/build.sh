#!/usr/bin/env bash
# `make image`: Keelson's OCI image, built on this machine without a Docker
# daemon. A static binary (glibc's static libraries from libc6-dev,
# `crt-static`; no musl target can be fetched here), the CA bundle, and
# nothing else, assembled into an OCI image layout with umoci (Debian):
# non-root (65532), entrypoint `/keelson run`, every file owned by root and
# read-only to the process, so it runs as well with a read-only root
# filesystem. Files are stamped with the last commit's time and so is the
# image, so the same commit and toolchain give the same layer and config.
#
# Out: target/image/oci (an OCI layout; tag = the crate version). Push it
# with skopeo (Debian): skopeo copy oci:target/image/oci:<tag> docker://<repo>:<tag>
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/image
layout="$out/oci"
tag=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

missing=()
command -v umoci >/dev/null || missing+=(umoci)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> building a static keelson (profile image: release, stripped; glibc crt-static); the first build takes minutes"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile image --locked \
  --target x86_64-unknown-linux-gnu -p keelson-operator --bin keelson
binary=target/x86_64-unknown-linux-gnu/image/keelson
if readelf -d "$binary" | grep -q NEEDED; then
  echo "$binary needs shared libraries:" >&2
  readelf -d "$binary" | grep NEEDED >&2
  exit 1
fi

echo "==> assembling the OCI image $layout:$tag with umoci"
rm -rf "$out"
mkdir -p "$out"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
bundle="$out/bundle"
umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
rootfs="$bundle/rootfs"
install -D -m 0555 "$binary" "$rootfs/keelson"
install -D -m 0444 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# Names for the numeric user, for tools that look them up; nothing else.
install -d -m 0755 "$rootfs/etc"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
chmod 0444 "$rootfs/etc/passwd" "$rootfs/etc/group"
chown -R 0:0 "$rootfs"
find "$rootfs" -exec touch -h -d "@$epoch" {} +
umoci repack --image "$layout:$tag" --history.created "$created" --history.created_by "make image" "$bundle"
umoci config --image "$layout:$tag" --created "$created" --history.created "$created" \
  --history.created_by "make image" \
  --config.user 65532:65532 --config.entrypoint /keelson --config.cmd run \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label "org.opencontainers.image.source=https://github.com/keelson-dev/keelson" \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$layout"
rm -rf "$bundle"

manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
size=$(du -sb "$layout/blobs" | cut -f1)
echo "    image $layout:$tag: manifest $manifest, $((size / 1024)) KiB of blobs (compressed)"
