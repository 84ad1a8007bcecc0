#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and etcd from the Go modules that
# controlplane/go.mod pins, once, into a cache outside the clone:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/turnout/controlplane/<kubernetes>-<etcd>-<go>/bin/
# holding one executable (turnout-controlplane) and a symlink per program. The Go module and build
# caches live beside it (turnout/go/), so a second clone, CI and `make cluster` reuse all of it.
# Progress goes to stderr; the last line on stdout is the bin directory.
#
#   scripts/build-controlplane.sh              build unless cached, print the bin directory
#   scripts/build-controlplane.sh --dir        print the bin directory, build nothing
#   scripts/build-controlplane.sh --background unless cached, start the build detached at the
#       lowest CPU and I/O priority (log: <cache>/controlplane/build.log) and return at once:
#       `make test` builds while the other tests run; the first test that needs the control
#       plane waits for it (a second build waits for the first's lock, then finds it cached)
#
# Without Go it fails with exit code 3, so callers can tell "no toolchain" from a broken build.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../controlplane"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/turnout"
export GOMODCACHE="${TURNOUT_GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${TURNOUT_GOCACHE:-$cache_root/go/build}"
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

say() { echo "controlplane: $*" >&2; }

GO="${GO:-$(command -v go || true)}"
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ] || ! [ -x "$GO" ]; then
  say "no Go toolchain found${GO:+ at $GO} (install Go 1.26 or set GO=/path/to/go)"
  exit 3
fi

module_version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' go.mod; }
k8s=$(module_version k8s.io/kubernetes)
etcd=$(module_version go.etcd.io/etcd/server/v3)
gover=$("$GO" env GOVERSION)
bin="$cache_root/controlplane/${k8s}-${etcd}-${gover}/bin"
# The versions name the directory; the sources decide whether what is in it is current.
source_hash=$(cat go.mod go.sum main.go | sha256sum | cut -c1-16)

if [ "${1:-}" = "--dir" ]; then
  echo "$bin"
  exit 0
fi

programs=(kube-apiserver kube-controller-manager kube-scheduler etcd)
mkdir -p "$cache_root/controlplane"
cached() { [ -x "$bin/turnout-controlplane" ] && [ "$(cat "$bin/.source" 2>/dev/null)" = "$source_hash" ]; }

if [ "${1:-}" = "--background" ]; then
  if cached; then
    say "cached: $bin (Kubernetes $k8s, etcd $etcd, $gover)"
    exit 0
  fi
  log="$cache_root/controlplane/build.log"
  if ! flock -n "$cache_root/controlplane/.lock" true; then
    say "a build is under way already (log: $log)"
    exit 0
  fi
  say "building in the background at the lowest priority (log: $log)"
  # A session of its own is an autogroup of its own (the scheduler shares CPU between autogroups
  # first): its nice value, 19, is what keeps the build behind every test process.
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true
                  exec nice -n 19 ionice -c 3 bash "$0"' "$script" >"$log" 2>&1 </dev/null &
  exit 0
fi

exec 9>"$cache_root/controlplane/.lock"
if ! flock -n 9; then
  say "another build holds $cache_root/controlplane/.lock (its log: $cache_root/controlplane/build.log); waiting for it"
  flock 9
fi

if cached; then
  say "cached: $bin (Kubernetes $k8s, etcd $etcd, $gover)"
  echo "$bin"
  exit 0
fi

start=$(date +%s)
say "building Kubernetes $k8s and etcd $etcd with $gover into $bin"
say "a first build compiles about 2,500 packages: 10 to 20 minutes on 2 busy cores; later builds reuse $GOCACHE"
say "downloading modules into $GOMODCACHE"
"$GO" mod download
total=$("$GO" list -deps . | wc -l)
say "compiling $total packages (each line: packages compiled so far; cached ones are skipped)"

stage=$(mktemp -d "$cache_root/controlplane/.build.XXXXXX")
trap 'rm -rf "$stage"' EXIT
version_flags="-X k8s.io/component-base/version.gitVersion=$k8s"
version_flags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$k8s" | cut -d. -f1 | tr -d v)"
version_flags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
version_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
# -v names each package as it is compiled: count them instead of printing 2,500 lines.
if ! nice -n 10 "$GO" build -v -p "${TURNOUT_BUILD_JOBS:-2}" -ldflags "-s -w $version_flags" \
  -o "$stage/turnout-controlplane" . 2>&1 |
  awk -v total="$total" '
    /^[a-zA-Z0-9._\/-]+$/ { n++; if (n % 100 == 0) printf "controlplane: %d/%d packages\n", n, total > "/dev/stderr"; next }
    { print > "/dev/stderr" }
  '; then
  say "go build failed"
  exit 1
fi

for p in "${programs[@]}"; do ln -s turnout-controlplane "$stage/$p"; done
echo "$source_hash" >"$stage/.source"
rm -rf "$bin"
mkdir -p "$(dirname "$bin")"
chmod 755 "$stage"
mv "$stage" "$bin"
trap - EXIT
size=$(du -m "$bin/turnout-controlplane" | cut -f1)
say "built in $(($(date +%s) - start)) s: $bin/turnout-controlplane (${size} MB) and symlinks ${programs[*]}"
echo "$bin"
