#!/usr/bin/env bash
# Installs the external programs the integration tests and benchmarks drive: Debian's Prometheus
# (scraped by the metrics tests), wrk (the benchmark's load generator), and PostgreSQL and MariaDB
# (the backend stores of the MLflow servers in tests/integration/test_backends.py; the tests start
# their own server processes, and policy-rc.d or no init keeps apt's from running). Idempotent; needs root
# or sudo for apt. Without CI=true a failure only warns: the tests that need a tool then skip,
# saying which; with CI=true nothing may skip, so a failure here fails the run.
set -u
need=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
echo "installing ${need[*]} with apt-get"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: could not install ${need[*]}" >&2
    exit 1
  fi
  echo "warning: could not install ${need[*]}; tests that need them will skip" >&2
fi
exit 0
