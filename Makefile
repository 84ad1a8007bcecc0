# One entry point for checks and one for tests. Everything runs in ./.venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit check fmt demo bench clean

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

## make demo: local MLflow + demo model + turnout-serve, one prediction and one feedback
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP) tools
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
