# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up for you.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help install demo run test test-fast lint check bench clean

help:
	@echo "make demo   run the hub on SQLite + in-memory transport with partner simulators (http://127.0.0.1:8080/ops)"
	@echo "make test   set up and run the tests (RabbitMQ and PostgreSQL tests need those servers)"
	@echo "make lint   ruff, mypy --strict, import-linter (connectors -> hub -> core), gashub check"
	@echo "make bench  raw pika floor vs the hub pipeline on RabbitMQ + PostgreSQL"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gashub needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gashub demo $(if $(DURATION),--duration $(DURATION),)

run: $(STAMP)
	$(BIN)/gashub run

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check hub core connectors tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	GASHUB_CONNECTORS__VENDOR__TOKEN=check-only GASHUB_CORE__KEYS__CHECK=$$($(BIN)/python -c 'import base64,secrets;print(base64.b64encode(secrets.token_bytes(32)).decode())') $(BIN)/gashub check

bench: $(STAMP)
	$(BIN)/python bench/hub_vs_raw.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
