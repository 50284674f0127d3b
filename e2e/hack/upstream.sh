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

# The Helm values that say to Linkerd's chart what each option set of
# operator/tests/option-sets.yaml says to Keelson: name|Helm arguments
# (CHART_DIR: the chart's folder).
HELM_VALUES='default|
ha|-f CHART_DIR/values-ha.yaml
custom|--set clusterDomain=corp.internal,identityTrustDomain=example.org,identity.issuer.scheme=kubernetes.io/tls,proxy.logLevel=debug,proxy.logFormat=json,proxy.await=false,proxy.resources.cpu.request=50m,proxy.resources.memory.limit=128Mi,webhookFailurePolicy=Fail,identity.serviceAccountTokenProjection=false,proxy.inbound.server.http2.keepAliveInterval=30s,proxy.outbound.server.http2.keepAliveTimeout=5s
cni|--set cniEnabled=true
cni-custom|--set cniEnabled=true'

# render_both TAG CHART SET HELM_ARGS: renders the control plane chart with
# helm (given a throwaway trust anchor and issuer, and the release's
# linkerdVersion, as Linkerd's CLI gives it) into
# $scratch/TAG/upstream-SET.yaml, and Keelson's ControlPlane of option set
# SET into $scratch/TAG/ours-SET.yaml. A set with `cni` also renders
# Linkerd's linkerd2-cni chart at TAG into the upstream file, with the
# chart values `spec.cni` names (namespace, logLevel, ignore*Ports,
# iptablesMode, confDir/binDir as destCNINetDir/destCNIBinDir,
# priorityClassName, tolerations).
render_both() {
  local tag=$1 chart=$2 set=$3 helm_args=$4 dir="$scratch/$1"
  if [ ! -f "$scratch/ca.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$scratch/ca.key" -out "$scratch/ca.crt" -days 2 \
      -subj "/CN=root.linkerd.cluster.local" >/dev/null 2>&1
  fi
  python3 - operator/tests/option-sets.yaml "$set" "$tag" > "$dir/cp-$set.json" <<'PY'
import json, sys, yaml
spec = dict(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]], version=sys.argv[3])
print(json.dumps({"apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
                  "metadata": {"name": "linkerd"}, "spec": spec}))
PY
  local ns
  ns=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["spec"].get("namespace", "linkerd"))' \
    "$dir/cp-$set.json")
  # shellcheck disable=SC2086
  "$HELM" template linkerd "$chart" --namespace "$ns" \
    --set-file identityTrustAnchorsPEM="$scratch/ca.crt" \
    --set-file identity.issuer.tls.crtPEM="$scratch/ca.crt" \
    --set-file identity.issuer.tls.keyPEM="$scratch/ca.key" \
    --set linkerdVersion="$tag" \
    ${helm_args//CHART_DIR/$chart} > "$dir/upstream-$set.yaml"
  if python3 -c 'import json, sys; sys.exit("cni" not in json.load(open(sys.argv[1]))["spec"])' \
      "$dir/cp-$set.json"; then
    local cni_chart cni_ns
    cni_chart=$(chart_at "$tag" linkerd2-cni)
    cni_ns=$(python3 - "$dir/cp-$set.json" "$dir/cni-values-$set.yaml" <<'PY'
import json, sys, yaml
cni = json.load(open(sys.argv[1]))["spec"]["cni"]
names = {"logLevel": "logLevel", "ignoreInboundPorts": "ignoreInboundPorts",
         "ignoreOutboundPorts": "ignoreOutboundPorts", "iptablesMode": "iptablesMode",
         "confDir": "destCNINetDir", "binDir": "destCNIBinDir",
         "priorityClassName": "priorityClassName", "tolerations": "tolerations"}
yaml.safe_dump({names[k]: v for k, v in cni.items() if k in names}, open(sys.argv[2], "w"))
print(cni.get("namespace", "linkerd-cni"))
PY
)
    "$HELM" template linkerd2-cni "$cni_chart" --namespace "$cni_ns" \
      -f "$dir/cni-values-$set.yaml" >> "$dir/upstream-$set.yaml"
  fi
  "$keelson" render -f "$dir/cp-$set.json" > "$dir/ours-$set.yaml"
}
