# fmnist: `make run` runs the pipeline, `make test` the test suite. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH when there is one, else a private copy in .tools/ (bootstrapped with pip).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen --no-sync

.DEFAULT_GOAL := help
.PHONY: help setup browser postgres run up down status test test-fast lint format bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/python -m pip install --quiet uv

setup: $(UV) ## install uv if missing, then the locked environment (.venv)
	$(UV) sync --locked --all-extras
	@touch $(SYNCED)

# The other targets sync only when uv.lock or pyproject.toml changed since the last sync: a
# sync checks the bytecode of every installed file (37,000 of them, seconds each time).
SYNCED := $(CURDIR)/.venv/.synced
$(SYNCED): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --all-extras
	@touch $@

browser: ## Debian's chromium and CJK fonts, for the MLflow UI browser test (apt; no browser downloads)
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	  echo "could not install chromium: the browser test will be skipped"; }
	@[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto | grep -qi cjk || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends fonts-noto-cjk >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q --no-install-recommends fonts-noto-cjk >/dev/null; } || \
	  echo "could not install fonts-noto-cjk: Korean shows as boxes in the screenshots"; }

postgres: ## Debian's postgresql (initdb, pg_ctl), for the production-profile tests (apt)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null; }; }

run: $(SYNCED) ## the whole pipeline: download -> prepare -> train -> evaluate -> register
	$(RUN) dvc repro

up: $(SYNCED) ## local stack on 127.0.0.1: Prefect server + worker + deployments, MLflow UI
	$(RUN) fmnist stack up

down: ## stop exactly what `make up` started
	@if [ -x .venv/bin/fmnist ]; then .venv/bin/fmnist stack down; else echo "nothing was running"; fi

status: ## what `make up` started, and whether each answers
	@if [ -x .venv/bin/fmnist ]; then .venv/bin/fmnist stack status; else echo "down"; fi

test: $(SYNCED) browser postgres ## every test, integration tests included (installs chromium, postgresql)
	$(RUN) pytest

test-fast: $(SYNCED) ## unit tests only (no slow or integration tests)
	$(RUN) pytest -m "not slow and not integration"

lint: $(SYNCED) ## ruff, mypy and the architecture's contracts (import-linter, pyproject.toml)
	$(RUN) ruff check src flows tests bench
	$(RUN) ruff format --check src flows tests bench
	$(RUN) mypy
	$(RUN) lint-imports --no-cache

format: $(SYNCED) ## apply ruff's formatting and fixes
	$(RUN) ruff format src flows tests bench
	$(RUN) ruff check --fix src flows tests bench

bench: $(SYNCED) ## benchmarks against the tutorial's own code (prints medians and ratios)
	$(RUN) python bench/bench_train.py
	$(RUN) python bench/bench_prefect.py
	$(RUN) python bench/bench_sweep.py
	$(RUN) python bench/bench_serve.py

clean: ## remove the environments (not data, models or the MLflow store)
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
