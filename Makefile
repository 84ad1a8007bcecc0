# One entry point for checks and one for tests. Everything runs in ./.venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit check fmt generate demo demo-serve bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,lint]"
	touch $(STAMP)

install: $(STAMP)

## make test: every test that can run on this machine (unit + integration + the real control
## plane of tests/real, which run last; e2e skips without Docker). A control plane not built yet
## builds in the background at the lowest priority meanwhile (scripts/build-controlplane.sh).
test: $(STAMP) tools
	@bash scripts/build-controlplane.sh --background || [ $$? -eq 3 ]
	$(BIN)/python -m pytest --durations=15

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## make tools: the external programs the tests drive (Prometheus, wrk, shellcheck, PostgreSQL,
## MariaDB; helm, kubectl and actionlint in .tools/bin)
tools:
	@bash scripts/install-tools.sh
	@bash scripts/install-k8s-tools.sh

## make check: formatting, lint, types, layering
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make generate: rewrite what is generated: the CRD (crds/ and its copies in the chart and
## manifests/base), its reference in docs/crd.md, the dashboards, the Helm values table, the
## README's table of deliberate differences from mlflow models serve
CRD := crds/modeldeployments.turnout.dev.yaml
generate: $(STAMP)
	$(BIN)/python -m turnout_operator.crd > $(CRD)
	cp $(CRD) charts/turnout/crds/
	cp $(CRD) manifests/base/crds/
	$(BIN)/python -m turnout_operator.crd --update-docs docs/crd.md
	$(BIN)/python scripts/dashboards.py
	$(BIN)/python scripts/helm_values_doc.py --write
	$(BIN)/python scripts/parity_table.py --write

## make demo: turnout's job on one machine: the real control plane and its node, MLflow, the chart
## installed with helm, a model at alias champion rolled out blue-green under steady traffic, then
## rolled back (needs root and Go; HOLD=seconds to keep it up afterwards, Ctrl-C ends it)
HOLD ?= 600
demo: $(STAMP) tools controlplane
	$(BIN)/python scripts/demo_cluster.py --hold $(HOLD)

## make demo-serve: turnout-serve alone: local MLflow, the demo model, one prediction and feedback
demo-serve: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP) tools
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/shadow.py
	$(BIN)/python bench/operator.py
	$(BIN)/python bench/registry_answers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

# --- kind quickstart, end-to-end suite, images (need a Docker engine; docs/quickstart.md) ------
.PHONY: quickstart quickstart-clean e2e images push-images

## make quickstart: turnout on a local kind cluster: chart + MLflow, a model, a blue-green switch
quickstart:
	@bash scripts/quickstart.sh preflight
	@$(MAKE) --no-print-directory install
	bash scripts/quickstart.sh

## make quickstart-clean: delete the quickstart's kind cluster
quickstart-clean:
	bash scripts/quickstart.sh down

## make e2e: tests/e2e on a kind cluster of its own (fails, rather than skips, without Docker)
e2e: $(STAMP)
	@bash scripts/install-k8s-tools.sh
	TURNOUT_E2E_REQUIRE=1 $(BIN)/python -m pytest tests/e2e -m e2e --durations=0

## make images: both container images, built from the repository root for this machine's platform
## as $(REGISTRY)/turnout-operator:$(TAG) and $(REGISTRY)/turnout-serve:$(TAG); the tag defaults
## to the chart's appVersion, which the chart's default image tags are, so a chart installed with
## only the two repositories set runs these (docs/helm.md#your-own-images)
REGISTRY ?= ghcr.io/turnout-dev
TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' charts/turnout/Chart.yaml)
images:
	docker build -f operator/Dockerfile -t $(REGISTRY)/turnout-operator:$(TAG) .
	docker build -f serving/Dockerfile -t $(REGISTRY)/turnout-serve:$(TAG) .

## make push-images: push both to $(REGISTRY) (after `make images` and `docker login`)
push-images:
	docker push $(REGISTRY)/turnout-operator:$(TAG)
	docker push $(REGISTRY)/turnout-serve:$(TAG)

## make model-image MODEL_URI=models:/NAME/VERSION IMAGE=...: the serving image with that model's
## own requirements.txt (its flavor's package) from the registry (MLFLOW_TRACKING_URI), as
## `mlflow models build-docker` does (docs/flavors.md)
.PHONY: model-image
model-image: $(STAMP)
	@test -n "$(MODEL_URI)" -a -n "$(IMAGE)" || { echo "usage: make model-image MODEL_URI=models:/NAME/VERSION IMAGE=name:tag"; exit 2; }
	requirements="$$($(BIN)/python scripts/model_requirements.py '$(MODEL_URI)')" && \
	docker build -f serving/Dockerfile --build-arg MODEL_REQUIREMENTS="$$requirements" -t '$(IMAGE)' .

# --- a real control plane, built from Kubernetes' Go modules (docs/development.md) -------------
.PHONY: controlplane cluster cluster-down cluster-status

## make controlplane: kube-apiserver, kube-controller-manager, kube-scheduler and etcd from the
## modules controlplane/go.mod pins, built once into ~/.cache/turnout/controlplane/ (needs Go 1.26;
## without Go it warns, and tests/real skips, except under CI=true, where it fails)
controlplane:
	@rc=0; bash scripts/build-controlplane.sh >/dev/null || rc=$$?; \
	if [ $$rc -eq 3 ] && [ "$${CI:-}" != true ]; then \
		echo "warning: no Go toolchain: the tests of tests/real will skip"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

## make cluster: that control plane in the background on 127.0.0.1 and a node agent that runs the
## pods scheduled onto its Node (tests/real/node); admin kubeconfig in .cluster/kubeconfig
## (kubectl --kubeconfig .cluster/kubeconfig get nodes)
cluster: $(STAMP) controlplane
	$(BIN)/python -m tests.real.cluster up --state .cluster

## make cluster-down: stop both and remove .cluster/ (the pod network included)
cluster-down: $(STAMP)
	$(BIN)/python -m tests.real.cluster down --state .cluster

## make cluster-status: which of the control plane's programs and the node agent run
cluster-status: $(STAMP)
	$(BIN)/python -m tests.real.cluster status --state .cluster
