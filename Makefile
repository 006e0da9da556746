# Kabinet: `make serve` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

include explorer/explorer.mk

.PHONY: install serve test test-slow lint schema bench clean starter-check

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

test: install starter-check
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

# The TypeScript starter (clients/typescript): graphql-codegen over schema.graphql, then
# tsc over the generated types and the code that uses them, so a schema change that breaks
# a front end fails `make test`. `npm ci` only when the lock changed or nothing is installed.
STARTER_DIR := clients/typescript
STARTER_STAMP := $(STARTER_DIR)/node_modules/.installed

$(STARTER_STAMP): $(STARTER_DIR)/package-lock.json $(STARTER_DIR)/package.json
	cd $(STARTER_DIR) && npm ci --no-audit --no-fund
	touch $@

starter-check: $(STARTER_STAMP)
	cd $(STARTER_DIR) && npx --no-install graphql-codegen --config codegen.ts
	cd $(STARTER_DIR) && npx --no-install tsc --noEmit

clean: explorer-clean
	rm -rf $(VENV) kabinet.db kabinet.db-wal kabinet.db-shm
	rm -rf $(STARTER_DIR)/node_modules $(STARTER_DIR)/src/generated
