# Two commands on a fresh machine: `make demo` and `make test`.
# The environment is .venv, installed from the lock files with uv (bootstrapped into the
# venv with pip when it is missing), so nothing is installed by hand. Bytecode is compiled
# at install time: with PYTHONDONTWRITEBYTECODE set, every run would otherwise recompile
# SQLAlchemy and scikit-learn from source (seconds per process).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv

.PHONY: demo test env env-dev bench bench-drift bench-monitoring lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.core-installed: requirements/lock.txt pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements/lock.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements/lock-dev.txt pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements/lock-dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@ $(VENV)/.core-installed

env: $(VENV)/.core-installed
env-dev: $(VENV)/.dev-installed

## make demo: set up and run the loan-approval lifecycle demo on the embedded SQLite store
demo: env
	$(BIN)/prodml demo

## make test: set up with the dev extras and run the whole suite (SQLite and PostgreSQL)
test: env-dev
	$(BIN)/python -m pytest

## make bench: the peer benchmarks, in their own environment (.venv-bench)
bench: env-dev
	test -x .venv-bench/bin/python || $(UV) venv --quiet --python $(PYTHON) .venv-bench
	$(UV) pip install --quiet --python .venv-bench/bin/python -r requirements/bench-lock.txt
	$(UV) pip install --quiet --python .venv-bench/bin/python --no-deps -e .
	.venv-bench/bin/python benchmarks/tracking.py
	.venv-bench/bin/python benchmarks/pipelines.py
	$(BIN)/python benchmarks/profile.py
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/labels.py
	$(BIN)/python benchmarks/serving.py --workers 1 2
	$(BIN)/python benchmarks/prediction_log.py
	$(BIN)/python benchmarks/batch.py --rows 1000000 --repeat 3

## make bench-drift: prodml drift vs Evidently's DataDriftPreset, in its own environment
## (BENCH_DRIFT_ARGS="--rows 100000" for a quick run; the default 1,000,000 rows a side takes minutes)
bench-drift: env
	test -x .venv-bench-drift/bin/python || $(UV) venv --quiet --python $(PYTHON) .venv-bench-drift
	$(UV) pip install --quiet --python .venv-bench-drift/bin/python -r requirements/bench-drift-lock.txt
	$(UV) pip install --quiet --python .venv-bench-drift/bin/python --no-deps -e .
	.venv-bench-drift/bin/python benchmarks/drift.py $(BENCH_DRIFT_ARGS)

## make bench-monitoring: a full and an incremental monitor run over 1,000,000 logged
## predictions vs Evidently's DataDriftPreset on the same frames (in .venv-bench-drift;
## BENCH_MONITORING_ARGS="--rows 200000" for a quick run)
bench-monitoring: env
	test -x .venv-bench-drift/bin/python || $(UV) venv --quiet --python $(PYTHON) .venv-bench-drift
	$(UV) pip install --quiet --python .venv-bench-drift/bin/python -r requirements/bench-drift-lock.txt
	$(UV) pip install --quiet --python .venv-bench-drift/bin/python --no-deps -e .
	.venv-bench-drift/bin/python benchmarks/monitoring.py $(BENCH_MONITORING_ARGS)

## make lock: re-resolve the lock files after changing dependencies in pyproject.toml
lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml -o requirements/lock.txt
	$(UV) pip compile --quiet pyproject.toml --extra dev -c requirements/lock.txt -o requirements/lock-dev.txt
	$(UV) pip compile --quiet pyproject.toml requirements/bench.in -o requirements/bench-lock.txt -p 3.11
	$(UV) pip compile --quiet pyproject.toml requirements/bench-drift.in -o requirements/bench-drift-lock.txt -p 3.11

clean:
	rm -rf $(VENV) .venv-bench .venv-bench-drift .prodml .pytest_cache
