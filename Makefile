# One entry point for checks and one for tests. Everything runs in ./.venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit check fmt generate demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,lint]"
	touch $(STAMP)

install: $(STAMP)

## make test: every test that can run on this machine (unit + integration; e2e skips without Docker)
test: $(STAMP) tools
	$(BIN)/python -m pytest --durations=15

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## make tools: the external programs the tests drive (Prometheus, wrk; helm and kubectl in .tools/bin)
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

## make demo: local MLflow + demo model + turnout-serve, one prediction and one feedback
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP) tools
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/operator.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

# --- kind quickstart, end-to-end suite, images (need a Docker engine; docs/quickstart.md) ------
.PHONY: quickstart quickstart-clean e2e images
IMAGE_TAG ?= dev

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

## make images: both container images, built from the repository root
images:
	docker build -f operator/Dockerfile -t ghcr.io/turnout-dev/turnout-operator:$(IMAGE_TAG) .
	docker build -f serving/Dockerfile -t ghcr.io/turnout-dev/turnout-serve:$(IMAGE_TAG) .
