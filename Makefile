# pg-jobmon: every command sets up what it needs on a fresh machine (Python 3.11+, make, git).
# uv is fetched into .uv/ (pinned); the project environment is .venv/, built from uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
# Prefect's environment: the airflow and prefect extras conflict (FastAPI pins), so each
# orchestrator has an environment of its own, both from the one uv.lock
PREFECT_VENV := .venv-prefect
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test lint bench bench-quick screenshots setup clean

demo: $(VENV)/.synced $(PREFECT_VENV)/.synced  ## run the demo: embedded PostgreSQL, a failing job, the surviving log
	$(VENV)/bin/python -m devtools.demo

test: $(VENV)/.synced $(PREFECT_VENV)/.synced  ## run the whole test suite (JOBMON_TEST_DSN selects a server)
	bash devtools/ensure-pgbouncer
	bash devtools/ensure-chromium
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(PREFECT_VENV)/bin/python -m pytest tests/prefect $(PREFECT_PYTEST_ARGS)

# Benchmarks: on JOBMON_BENCH_DSN, else the system PostgreSQL 15 (it ships dblink, which the
# per-call-connection contender needs), else the embedded server.
BENCH_DSN = $${JOBMON_BENCH_DSN:-$$(bash .ci/pg15-dsn 2>/dev/null)}

bench: $(VENV)/.synced  ## all six benchmark sections, up to 10^7 log rows (about 10 minutes)
	JOBMON_BENCH_DSN="$(BENCH_DSN)" $(VENV)/bin/python -m bench.run --json bench/results/full.json

bench-quick: $(VENV)/.synced  ## the same at small sizes (about 30 s), as CI runs it
	JOBMON_BENCH_DSN="$(BENCH_DSN)" $(VENV)/bin/python -m bench.run --quick --json bench/results/quick.json

lint: $(VENV)/.synced $(PREFECT_VENV)/.synced  ## ruff (style, bugs) and mypy (types; strict on jobmon_core: see pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PREFECT_VENV)/bin/mypy jobmon_prefect/*.py tests/prefect/*.py flows_examples/*.py bench/prefect_overhead.py devtools/prefect_demo.py devtools/prefect_env.py

screenshots: $(VENV)/.synced  ## docs/screenshots/*.png: each view in headless chromium (and inside Airflow's UI)
	bash devtools/ensure-chromium
	$(VENV)/bin/python -m devtools.screenshots

setup: $(VENV)/.synced $(PREFECT_VENV)/.synced

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --extra airflow --extra web --compile-bytecode --quiet
	touch $@

$(PREFECT_VENV)/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(PREFECT_VENV) $(UV) sync --locked --extra prefect --extra web --compile-bytecode --quiet
	touch $@

clean:
	rm -rf .uv $(VENV) $(PREFECT_VENV) .pytest_cache .ruff_cache .mypy_cache
