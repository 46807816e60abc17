# The README's commands. Everything installs into .venv; all state lives in .state/.
SHELL := /bin/bash
# The first Python 3.11-3.13 on PATH (override: make PYTHON=/path/to/python3). Not 3.10:
# Airflow 3.3's providers need 3.11 or newer.
PYTHON ?= $(firstword $(foreach v,3.11 3.12 3.13,$(shell command -v python$(v) 2>/dev/null)) \
	$(shell python3 -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null && command -v python3))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRLOOP_HOME ?= $(CURDIR)/.state
export BENTOML_HOME ?= $(AIRLOOP_HOME)/bentoml
export GX_ANALYTICS_ENABLED := False
# Eight months of both demo models fit 10 minutes on 2 cores; MONTHS=1-12 replays the year.
MONTHS ?= 1-8

.PHONY: install demo test test-fast lint up down status clean mlflow-ui bench-serving browser prometheus haproxy

install: $(STAMP)

# Only the browser tests need a browser: Debian's Chromium (never one a test tool downloads).
# Installing it needs root (CI runs as root); `make demo` never asks for it.
CHROMIUM := /usr/bin/chromium

browser: $(CHROMIUM)

$(CHROMIUM):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# The serving benchmark drives its load with Debian's wrk.
WRK := /usr/bin/wrk

$(WRK):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk

# Service-health monitoring runs a real Prometheus: Debian's package, unpacked into .tools/
# (git-ignored). `apt-get download` and `dpkg -x` need no root, so `make demo` never asks.
PROMETHEUS := .tools/prometheus/usr/bin/prometheus

prometheus: $(PROMETHEUS)

$(PROMETHEUS):
	mkdir -p .tools
	# A machine whose package lists were never fetched needs them first (that needs root).
	cd .tools && rm -f prometheus_*.deb && { apt-get download -q prometheus || { apt-get update -q && apt-get download -q prometheus; }; }
	dpkg -x .tools/prometheus_*.deb .tools/prometheus
	rm -f .tools/prometheus_*.deb
	touch $@

# Traffic moves between a model's servers through HAProxy: Debian's package and the two
# libraries it needs that a slim machine lacks, unpacked the same way.
HAPROXY := .tools/haproxy/usr/sbin/haproxy
HAPROXY_DEBS := haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1

haproxy: $(HAPROXY)

$(HAPROXY):
	mkdir -p .tools/haproxy-debs
	cd .tools/haproxy-debs && rm -f *.deb && { apt-get download -q $(HAPROXY_DEBS) || { apt-get update -q && apt-get download -q $(HAPROXY_DEBS); }; }
	for deb in .tools/haproxy-debs/*.deb; do dpkg -x $$deb .tools/haproxy; done
	rm -rf .tools/haproxy-debs
	touch $@

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11-3.13 found; set PYTHON=/path/to/python3" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 resolves to the CPU build kept on this machine (pip's find-links).
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Set up and run the whole loop on the embedded default (from an empty $(AIRLOOP_HOME)) for
# every demo model side by side (flights and weather), then print what happened per model.
demo: install $(HAPROXY)
	@$(MAKE) --no-print-directory $(PROMETHEUS) || echo "make demo: no Prometheus could be installed; the served models' alerts are off"
	$(BIN)/airloop demo run --fresh --months $(MONTHS) $(if $(KEEP_RUNNING),--keep-running)

test: install browser lint $(PROMETHEUS) $(HAPROXY) $(WRK)
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
