# One task runner for humans and CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
N      ?= 100000

.PHONY: demo test lint typecheck unit services venv bench faults clean

$(BIN)/xueji: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/xueji

services:
	@scripts/ensure-services.sh

## The main job: simulator + bridge + a cohort of 2,000 children, end to end.
demo: venv services
	$(BIN)/xueji demo

## Everything CI runs.
test: venv services lint typecheck
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy bridge schemas consumers simulator

unit: venv
	$(BIN)/python -m pytest tests/unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
