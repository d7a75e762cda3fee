# certctl developer commands. Everything runs from a local virtual environment (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_DIR ?= ./certctl-data
PYTEST_WORKERS ?= auto

.PHONY: run test lint bench venv clean fmt docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/certctl server --data-dir $(DATA_DIR) --demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

docs: $(STAMP)
	$(BIN)/python -m certctl.domain.rbac_doc > docs/operator/rbac.md
	$(BIN)/python -m certctl.agent.targets.reference > docs/reference/targets.md

bench: $(STAMP)
	cd bench && ../$(BIN)/python issuance.py && ../$(BIN)/python authz.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
