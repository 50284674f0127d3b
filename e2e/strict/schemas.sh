# Sourced by `make strict` and `make chart`: installs the strict OpenAPI
# schemas from PyPI once, under ~/.cache/keelson/strict (kubernetes-validate
# 1.37.0, the schemas of 1.25 on, with jsonschema and PyYAML; 1.31.0 for
# 1.22 to 1.24), and sets `cache`.
cache="${HOME}/.cache/keelson/strict"
for version in 1.31.0 1.37.0; do
  dir="$cache/kubernetes-validate-$version"
  [ -f "$dir/.installed" ] && continue
  echo "==> installing kubernetes-validate $version (PyPI) into $dir"
  rm -rf "$dir"
  deps=(--no-deps)
  # The newest one brings the validator's own dependencies.
  [ "$version" = 1.37.0 ] && deps=()
  python3 -m pip install -q --disable-pip-version-check --target "$dir" "${deps[@]}" \
    "kubernetes-validate==$version" 2>&1 | grep -v "Running pip as the 'root' user" || true
  ls "$dir/kubernetes_validate/kubernetes-json-schema" >/dev/null
  touch "$dir/.installed"
done
