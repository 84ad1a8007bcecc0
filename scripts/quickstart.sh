#!/usr/bin/env bash
# make quickstart: turnout on a local kind cluster, from nothing to a blue-green switch.
#
#   bash scripts/quickstart.sh          # up + demo
#   bash scripts/quickstart.sh up       # cluster, images, chart with its bundled MLflow
#   bash scripts/quickstart.sh demo     # v1 @champion, the example, a prediction, v2, the switch
#   bash scripts/quickstart.sh down     # delete the cluster (make quickstart-clean)
#   bash scripts/quickstart.sh preflight  # only check that the tools are there
#
# Needs docker (a running engine), kind, kubectl and helm, and the repository's .venv (make
# install) for training the demo models; everything missing is named up front, before anything
# is created. docs/quickstart.md walks through what each step shows. Knobs (environment):
#   TURNOUT_CLUSTER=turnout       kind cluster name (context kind-$TURNOUT_CLUSTER)
#   TURNOUT_KIND_CONFIG=kind-config.yaml   the cluster's kind configuration
#   TURNOUT_TAG=dev               tag of the two images built here
#   TURNOUT_MLFLOW_PORT=15000     local port the cluster's MLflow is forwarded to
#   TURNOUT_SWITCH_TIMEOUT=300    seconds to wait for the blue-green switch
#   PYTHON=.venv/bin/python       interpreter with the repository's [test] extra installed
#   TOOLS_BIN=.tools/bin          where `make tools` put kubectl and helm (looked up after PATH)
set -euo pipefail

# Only bash built-ins until the tools are checked: the check must work on a bare PATH.
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
ROOT=$(cd "$here/.." && pwd)
CLUSTER=${TURNOUT_CLUSTER:-turnout}
CONTEXT=kind-$CLUSTER
KIND_CONFIG=${TURNOUT_KIND_CONFIG:-$ROOT/kind-config.yaml}
TAG=${TURNOUT_TAG:-dev}
OPERATOR_IMAGE=ghcr.io/turnout-dev/turnout-operator
SERVE_IMAGE=ghcr.io/turnout-dev/turnout-serve
SYSTEM_NS=turnout-system
MLFLOW_PORT=${TURNOUT_MLFLOW_PORT:-15000}
SWITCH_TIMEOUT=${TURNOUT_SWITCH_TIMEOUT:-300}
NODE_PORT=30080 # kind-config.yaml maps it to 127.0.0.1:30080
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TOOLS_BIN=${TOOLS_BIN:-$ROOT/.tools/bin}

step() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'quickstart: %s\n' "$@" >&2
  exit 1
}

# --- preflight: name everything missing at once, create nothing -------------------------------

hint() {
  case $1 in
  docker) echo "https://docs.docker.com/get-docker/" ;;
  kind) echo "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
  kubectl) echo "make tools (puts it in .tools/bin), or https://kubernetes.io/docs/tasks/tools/" ;;
  helm) echo "make tools (puts it in .tools/bin), or https://helm.sh/docs/intro/install/" ;;
  esac
}

# Sets DOCKER, KIND, KUBECTL or HELM to each tool found; collects the others in `missing`.
# Plain bash 3.2 (macOS's /bin/bash): no associative arrays, no ${var^^}.
find_tools() {
  local tool var found
  missing=()
  for tool in "$@"; do
    case $tool in docker) var=DOCKER ;; kind) var=KIND ;; kubectl) var=KUBECTL ;; helm) var=HELM ;; esac
    if found=$(command -v "$tool" 2>/dev/null); then
      printf -v "$var" '%s' "$found"
    elif [[ -x $TOOLS_BIN/$tool ]]; then
      printf -v "$var" '%s' "$TOOLS_BIN/$tool"
    else
      missing+=("$tool: not found on PATH; install it: $(hint "$tool")")
    fi
  done
}

preflight() {
  find_tools "$@"
  if [[ " $* " == *" docker "* && -n ${DOCKER:-} ]] && ! "$DOCKER" info >/dev/null 2>&1; then
    missing+=("docker engine: \`docker info\` failed, so no Docker engine is reachable; start Docker (or check DOCKER_HOST)")
  fi
  if [[ ${NEED_PYTHON:-} == 1 ]] && ! [[ -x $PYTHON ]]; then
    missing+=("python: $PYTHON not found; run \`make install\` (or set PYTHON)")
  fi
  if ((${#missing[@]})); then
    printf 'quickstart: cannot start, missing:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

k() { "$KUBECTL" --context "$CONTEXT" "$@"; }

# --- up: cluster, images, chart ---------------------------------------------------------------

create_cluster() {
  if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    step "kind cluster $CLUSTER exists: reusing it"
  else
    step "creating kind cluster $CLUSTER ($KIND_CONFIG: a control plane and a worker)"
    "$KIND" create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --wait 180s
  fi
}

build_images() {
  step "building $OPERATOR_IMAGE:$TAG and $SERVE_IMAGE:$TAG"
  "$DOCKER" build -f "$ROOT/operator/Dockerfile" -t "$OPERATOR_IMAGE:$TAG" "$ROOT"
  "$DOCKER" build -f "$ROOT/serving/Dockerfile" -t "$SERVE_IMAGE:$TAG" "$ROOT"
  step "loading both images into the cluster's nodes (no registry involved)"
  "$KIND" load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE:$TAG" "$SERVE_IMAGE:$TAG"
}

install_chart() {
  local upgrade=0
  "$HELM" status turnout --kube-context "$CONTEXT" -n "$SYSTEM_NS" >/dev/null 2>&1 && upgrade=1
  step "helm upgrade --install turnout charts/turnout (operator + bundled MLflow)"
  "$HELM" upgrade --install turnout "$ROOT/charts/turnout" --kube-context "$CONTEXT" \
    --namespace "$SYSTEM_NS" --create-namespace \
    --set mlflow.enabled=true \
    --set operator.image.tag="$TAG" \
    --set operator.servingImage.tag="$TAG" \
    --wait --timeout 15m
  if ((upgrade)); then # same tag, new image: the running pod must pick it up
    k -n "$SYSTEM_NS" rollout restart deployment/turnout-operator
    k -n "$SYSTEM_NS" rollout status deployment/turnout-operator --timeout 5m
  fi
  k -n "$SYSTEM_NS" get deployments,services
}

# --- demo: the model story --------------------------------------------------------------------

forward_mlflow() {
  step "port-forwarding the cluster's MLflow to http://127.0.0.1:$MLFLOW_PORT"
  k -n "$SYSTEM_NS" port-forward svc/mlflow "$MLFLOW_PORT:5000" >/dev/null 2>&1 &
  FORWARD_PID=$!
  trap 'kill "$FORWARD_PID" 2>/dev/null || true' EXIT
  "$PYTHON" "$ROOT/scripts/quickstart_models.py" wait "http://127.0.0.1:$MLFLOW_PORT/health" \
    --timeout 120
}

register() {
  "$PYTHON" "$ROOT/scripts/quickstart_models.py" register-champion \
    --tracking-uri "http://127.0.0.1:$MLFLOW_PORT" --trees "$1"
}

predict() { # $1: the version expected to answer
  "$PYTHON" "$ROOT/scripts/quickstart_models.py" predict "http://127.0.0.1:$NODE_PORT" --version "$1"
}

demo() {
  forward_mlflow
  step "training the demo regressor and registering it as Diabetes @champion"
  V1=$(register 100)
  echo "registered Diabetes version $V1, alias champion -> $V1"

  step "kubectl apply -f examples/diabetes-champion.yaml (serves Diabetes@champion)"
  k apply -f "$ROOT/examples/diabetes-champion.yaml"
  k wait mdep/diabetes --for=jsonpath='{.status.activeVersion}'="$V1" --timeout 10m
  k get mdep diabetes
  k get deployments,services -l turnout.dev/model-deployment=diabetes

  step "exposing the active Service diabetes on NodePort $NODE_PORT (http://127.0.0.1:$NODE_PORT)"
  # The operator only ever patches this Service's selector: the port type stays as set here.
  k patch service diabetes --type strategic \
    -p "{\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"port\":80,\"nodePort\":$NODE_PORT}]}}"
  "$PYTHON" "$ROOT/scripts/quickstart_models.py" wait "http://127.0.0.1:$NODE_PORT/v2/health/ready"
  step "POST /invocations through the active Service"
  predict "$V1"

  step "training a second version and moving the alias champion to it"
  V2=$(register 50)
  echo "registered Diabetes version $V2, alias champion -> $V2"
  step "the operator notices within pollIntervalSeconds and rolls version $V2 out blue-green"
  k get mdep diabetes -w &
  local watch=$!
  k wait mdep/diabetes --for=jsonpath='{.status.activeVersion}'="$V2" \
    --timeout "${SWITCH_TIMEOUT}s" || {
    kill "$watch" 2>/dev/null || true
    die "version $V2 did not become active within ${SWITCH_TIMEOUT}s; see \`kubectl describe mdep diabetes\`"
  }
  kill "$watch" 2>/dev/null || true
  wait "$watch" 2>/dev/null || true

  step "the same URL now answers from version $V2 (the other color)"
  predict "$V2"
  k get deployments -l turnout.dev/model-deployment=diabetes
  cat <<EOF

Done. http://127.0.0.1:$NODE_PORT serves Diabetes@champion (POST /invocations, GET /info).
The previous color stays warm for scaleDownDelaySeconds (60 s): try
  kubectl annotate mdep diabetes turnout.dev/rollback=now
  kubectl get mdep diabetes -w
MLflow: kubectl -n $SYSTEM_NS port-forward svc/mlflow $MLFLOW_PORT:5000, then http://127.0.0.1:$MLFLOW_PORT
Delete everything: make quickstart-clean
EOF
}

main() {
  local command=${1:-all}
  case $command in
  preflight) # what `make quickstart` runs before installing anything
    preflight docker kind kubectl helm
    echo "quickstart: docker (engine reachable), kind, kubectl and helm found"
    ;;
  up)
    preflight docker kind kubectl helm
    create_cluster
    build_images
    install_chart
    ;;
  demo)
    NEED_PYTHON=1 preflight kind kubectl
    demo
    ;;
  all)
    NEED_PYTHON=1 preflight docker kind kubectl helm
    create_cluster
    build_images
    install_chart
    demo
    ;;
  down)
    preflight kind
    step "deleting kind cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER"
    ;;
  *) die "unknown command '$command' (preflight, up, demo, all or down)" ;;
  esac
}

main "$@"
