# One task runner for humans and CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
N      ?= 100000

.PHONY: demo test lint typecheck unit services browser venv bench faults faults-ha clean

$(BIN)/xueji: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/xueji

services:
	@scripts/ensure-services.sh

## The console test's browser: Debian's chromium and fonts-wqy-microhei (apt-get if missing).
browser:
	@scripts/ensure-browser.sh

## The main job: simulator + bridge + a cohort of 2,000 children, end to end.
demo: venv services
	$(BIN)/xueji demo

## Everything CI runs; on a fresh machine it sets up what it needs (services, browser).
test: venv services browser lint typecheck
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy bridge schemas consumers simulator

unit: venv
	$(BIN)/python -m pytest tests/unit

## Benchmarks (not part of the test run): each prints a table and one BENCH_JSON line.
## Sizes: BENCH_N events per hand-over run (3 runs of the bridge and both baselines),
## RECON_SIZES children per reconciliation, PULL_ARGS for the school pull, SOAK_N events
## at SOAK_RATE per second for the soak. `make bench` runs all four (a few hours at the
## defaults); bench-handoff, bench-reconcile, bench-pull and bench-soak run one each.
BENCH_N     ?= $(N)
RECON_SIZES ?= 100000,1500000
PULL_ARGS   ?=
SOAK_N      ?= 1000000
SOAK_RATE   ?= 200
BENCH_ARGS  ?=
.PHONY: bench-handoff bench-reconcile bench-pull bench-soak
bench: bench-handoff bench-reconcile bench-pull bench-soak
bench-handoff: venv services
	$(BIN)/python -m bench.handoff --n $(BENCH_N) $(BENCH_ARGS)
bench-reconcile: venv services
	$(BIN)/python -m bench.reconcile --sizes $(RECON_SIZES)
bench-pull: venv services
	$(BIN)/python -m bench.pull $(PULL_ARGS)
bench-soak: venv services
	$(BIN)/python -m bench.soak --n $(SOAK_N) --rate $(SOAK_RATE)

## The fault suite at full size (CI runs it small): make faults N=100000
faults: venv services
	XUEJI_FAULTS_N=$(N) $(BIN)/python -m pytest tests/faults -s -o timeout=0

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## The HA fault suite on engines it starts itself (3 RabbitMQ nodes, PostgreSQL primary +
## synchronous standby): make faults-ha N=2000
faults-ha: venv services
	XUEJI_FAULTS_HA_N=$(N) $(BIN)/python -m pytest tests/faults_ha -s -o timeout=0
