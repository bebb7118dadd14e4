# Two commands set up everything on a fresh machine (Python 3.11+, Node.js 18+):
#   make demo   - the main job against the local Graph's demo tenant and Azurite (no Azure account)
#   make test   - the test suite
# Both create .venv and node_modules first if they are missing or out of date.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench bench-xl lint schema openapi infra-check ui

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# checkov (static checks of infra/) in its own venv: its dependencies pin versions the project does not use.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: tests/infra/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r tests/infra/requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

demo: setup
	$(PY) -m devtools.demo

# The management page on http://127.0.0.1:8000/api/manage/ (development mode) against Azurite and the demo tenant.
ui: setup
	$(PY) -m devtools.ui

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m devtools.benchmark

# 1,000,000 users, 100,000 groups, 10,000,000 memberships: about 12 minutes; the local Graph takes about 3 GB.
bench-xl: setup
	$(PY) -m devtools.benchmark_xl

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

infra-check: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/infra

schema: setup
	$(PY) -m shared.config --write-schema

openapi: setup
	$(PY) -m shared.openapi --write
