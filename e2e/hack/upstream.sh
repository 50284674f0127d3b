# Sourced by the maintainer tools that compare Keelson's renders with
# Linkerd's charts at the catalog's tags (crd-parity.sh, config-parity.sh).
# Expects `upstream` (a linkerd2 checkout, possibly bare) and `tags` (the
# tags asked for, possibly none); sets HELM, `keelson` (a fresh build),
# `tags` (every catalog release when none were asked for) and `scratch` (a
# folder removed on exit), and defines `chart_at`.
# shellcheck source=helm.sh
source e2e/hack/helm.sh
echo "==> building keelson" >&2
cargo build -q -p keelson-operator --bin keelson
keelson=target/debug/keelson
[ ${#tags[@]} -gt 0 ] || mapfile -t tags < <("$keelson" versions | cut -f1)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# chart_at TAG CHART: prints the folder of Linkerd's chart CHART at TAG,
# read with git archive and its dependencies (the partials) built.
chart_at() {
  local dir="$scratch/$1"
  mkdir -p "$dir"
  git -C "$upstream" archive "$1" charts/partials "charts/$2" | tar -x -C "$dir"
  "$HELM" dependency build "$dir/charts/$2" >/dev/null
  echo "$dir/charts/$2"
}
