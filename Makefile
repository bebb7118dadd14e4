# Two commands set up everything on a fresh machine (Python 3.11+, Node.js 18+):
#   make demo   - the main job against the local Graph's demo tenant and Azurite (no Azure account)
#   make test   - the test suite
# Both create .venv and node_modules first if they are missing or out of date.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench lint schema

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

demo: setup
	$(PY) -m devtools.demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m devtools.benchmark

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

schema: setup
	$(PY) -m shared.config --write-schema
