#!/usr/bin/env bash
# Installs the external programs the tests and benchmarks drive. With apt: Debian's Prometheus
# (scraped by the metrics tests), wrk (the benchmark's load generator), shellcheck (actionlint
# checks the workflows' `run:` scripts with it), and PostgreSQL and MariaDB (the backend stores of
# the MLflow servers in tests/integration/test_backends.py; the tests start their own server
# processes, and policy-rc.d or no init keeps apt's from running). From the Go module proxy: actionlint
# (tests/deploy/test_workflows.py lints .github/workflows with it), built into a cache outside the
# clone keyed by its version,
#   ${XDG_CACHE_HOME:-$HOME/.cache}/turnout/tools/actionlint-<version>/actionlint
# (with the control plane's Go module and build caches: scripts/build-controlplane.sh) and linked
# as .tools/bin/actionlint, so a second clone or CI reuses it and a new pin rebuilds it.
# Idempotent; apt needs root or sudo, actionlint a Go toolchain (GO=/path/to/go, else go on PATH
# or /usr/local/go/bin/go). Without CI=true a failure only warns: the tests that need a tool then
# skip, saying which; with CI=true nothing may skip, so a failure here fails the run.
set -u
ACTIONLINT_VERSION=v1.7.12
cd "$(dirname "$0")/.."
status=0

fail() {
  if [ "${CI:-}" = "true" ]; then
    echo "error: $*" >&2
    status=1
  else
    echo "warning: $*; tests that need them will skip" >&2
  fi
}

apt_tools() {
  local need=() sudo=""
  command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  echo "installing ${need[*]} with apt-get"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    fail "could not install ${need[*]}"
  fi
}

actionlint() {
  local cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/turnout"
  local dir="$cache_root/tools/actionlint-$ACTIONLINT_VERSION" link=.tools/bin/actionlint
  if ! [ -x "$dir/actionlint" ]; then
    local go="${GO:-$(command -v go || true)}"
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    if [ -z "$go" ] || ! [ -x "$go" ]; then
      fail "no Go toolchain to build actionlint $ACTIONLINT_VERSION with (install Go or set GO=/path/to/go)"
      return
    fi
    echo "building actionlint $ACTIONLINT_VERSION into $dir"
    mkdir -p "$dir"
    if ! GOBIN="$dir" GOMODCACHE="${TURNOUT_GOMODCACHE:-$cache_root/go/mod}" \
      GOCACHE="${TURNOUT_GOCACHE:-$cache_root/go/build}" GOFLAGS="-trimpath" CGO_ENABLED=0 \
      GOTOOLCHAIN=local "$go" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"; then
      fail "could not build actionlint $ACTIONLINT_VERSION"
      return
    fi
  fi
  if [ "$(readlink "$link" 2>/dev/null)" != "$dir/actionlint" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$dir/actionlint" "$link"
  fi
}

apt_tools
actionlint
exit $status
