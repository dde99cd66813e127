# Telltale: `make demo` runs the app (embedded profile), `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Optional: an index with CPU-only torch wheels for machines without the local wheel,
# e.g. make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: demo test lint format clean-demo help

help:
	@echo "make demo   - install, migrate, create the admin user and run Telltale at http://127.0.0.1:8000"
	@echo "make test   - run the test suite (SQLite, or PostgreSQL+Redis via TELLTALE_TEST_* variables)"
	@echo "make lint   - ruff check and format check"

$(BIN)/python:
	@echo "==> [setup 1/4] creating virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt
	@echo "==> [setup 2/4] installing torch 2.13.0 (CPU build; pinned first so no CUDA build is pulled)"
	$(PIP) install --progress-bar on torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	@echo "==> [setup 3/4] installing pinned dependencies from requirements.txt"
	$(PIP) install --progress-bar on -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	@echo "==> [setup 4/4] installing test tools from requirements-dev.txt"
	$(PIP) install --progress-bar on -r requirements-dev.txt
	@touch $@

var/secret_key:
	@mkdir -p var
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@
	@echo "==> wrote a random SECRET_KEY to $@ (production sets SECRET_KEY instead)"

demo: $(VENV)/.installed var/secret_key
	$(BIN)/python manage.py demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-demo:
	rm -rf var/telltale.sqlite3* var/celery var/prometheus var/agent var/celerybeat-schedule* var/models var/demo-simulation*.json
