# Filiera: the two commands of the README, and friends.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export FILIERA_DATA_DIR ?= $(CURDIR)/var

.PHONY: install install-test run demo test test-fast typecheck audit-deps bench reliability fuzz clean

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

## make test: install the test extras, audit them, and run the whole suite (SQLite and PostgreSQL)
test: install-test audit-deps
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

test-fast: install-test
	$(BIN)/python -m pytest -m "not slow" -x -q

typecheck: install-test
	$(BIN)/python -m mypy

## make audit-deps: pip-audit the installed environment; a known vulnerability fails it, and an
## audit the vulnerability service could not answer says so (and fails with AUDIT_REQUIRED=1)
AUDIT_REQUIRED ?= 0
audit-deps: install-test
	$(BIN)/python -m tests.audit_deps $(if $(filter 1,$(AUDIT_REQUIRED)),--require)

## make bench: ingest, batch and proof benchmarks beside the raw Ed25519 verify rate
bench: install-test
	$(BIN)/python -m bench

## make reliability: TESTPLAN T1 crash hammer on SQLite and PostgreSQL, 180 s each with 20+ kill -9,
## then its negative controls against broken servers (docs/reliability.md): a summary, and every
## figure in bench/out/reliability.json
reliability: install-test
	$(BIN)/python -m tests.reliability

## make fuzz: TESTPLAN T3's atheris differential fuzz of the proof verifiers against the naive
## RFC 6962 reference (tests/fuzz/proofs.py) for FUZZ_SECONDS; a crash input lands in bench/out/fuzz
FUZZ_SECONDS ?= 600
fuzz: install-test
	mkdir -p bench/out/fuzz
	$(BIN)/python -m tests.fuzz.proofs -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=bench/out/fuzz/

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .hypothesis
