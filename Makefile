# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= $(if $(wildcard spend-proxy.toml),spend-proxy.toml,config.example.toml)

.PHONY: install run test check bench clean

$(BIN)/spend-proxy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/spend-proxy

run: install  ## start the proxy on the embedded default (SQLite + in-process counters)
	$(BIN)/spend-proxy migrate --config $(CONFIG)
	$(BIN)/spend-proxy serve --config $(CONFIG)

test: install  ## run the whole test suite (needs the local Redis and PostgreSQL)
	$(BIN)/pytest

check: install  ## format, lint, types, import contracts, tests: what CI runs
	scripts/check

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
