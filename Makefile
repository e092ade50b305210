# Filiera: the two commands of the README, and friends.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export FILIERA_DATA_DIR ?= $(CURDIR)/var

.PHONY: install install-test run demo test test-fast typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,analytics]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## make run: install, create a demo ledger on SQLite (once), serve it on 127.0.0.1:8000
run: install
	$(BIN)/filiera demo --if-missing
	$(BIN)/filiera serve --host $(HOST) --port $(PORT) --workers 2

## make test: install the test extras and run the whole suite (SQLite and PostgreSQL)
test: install-test
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

test-fast: install-test
	$(BIN)/python -m pytest -m "not slow" -x -q

typecheck: install-test
	$(BIN)/python -m mypy

## make bench: ingest, batch and proof benchmarks beside the raw Ed25519 verify rate
bench: install-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .hypothesis
