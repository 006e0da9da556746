# Kabinet: `make serve` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

include explorer/explorer.mk

.PHONY: install serve test test-slow lint schema bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(STAMP) explorer

serve: install
	$(BIN)/kabinet migrate
	$(BIN)/kabinet seed-demo
	$(BIN)/kabinet serve

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy kabinet models resolvers schema auth core
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no slow test yet

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy kabinet models resolvers schema auth core

schema: install
	$(BIN)/kabinet export-schema --output schema.graphql

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean: explorer-clean
	rm -rf $(VENV) kabinet.db kabinet.db-wal kabinet.db-shm
