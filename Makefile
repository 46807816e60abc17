# The README's commands. Everything installs into .venv; all state lives in .state/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRLOOP_HOME ?= $(CURDIR)/.state
export BENTOML_HOME ?= $(AIRLOOP_HOME)/bentoml
export GX_ANALYTICS_ENABLED := False
MONTHS ?= 1-12

.PHONY: install demo test test-fast lint up down status clean mlflow-ui bench-serving

# The browser tests drive Debian's Chromium (never a browser a test tool downloads).
CHROMIUM := /usr/bin/chromium

install: $(STAMP) $(CHROMIUM)

$(CHROMIUM):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# The serving benchmark drives its load with Debian's wrk.
WRK := /usr/bin/wrk

$(WRK):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 resolves to the CPU build kept on this machine (pip's find-links).
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Set up and run the whole loop on the embedded default (from an empty $(AIRLOOP_HOME)),
# then print what happened.
demo: install
	$(BIN)/airloop demo run --fresh --months $(MONTHS) $(if $(KEEP_RUNNING),--keep-running)

test: install lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=25 tests

# Everything but the end-to-end tests through the real scheduler and the real-table suite.
test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider tests -m "not e2e and not generality"

lint: install
	$(BIN)/ruff check dags include plugins tests benchmarks
	$(BIN)/mypy

# /predict_one, /predict and `mlflow models serve`, binary and multiclass, in one run.
bench-serving: install $(WRK)
	$(BIN)/python benchmarks/serving_load.py

up: install
	$(BIN)/airloop stack up

down:
	$(BIN)/airloop stack down

status:
	$(BIN)/airloop stack status

clean: down
	rm -rf $(AIRLOOP_HOME)

# The MLflow UI over the embedded tracking store.
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(AIRLOOP_HOME)/mlflow.db --host 127.0.0.1 --port 5000
