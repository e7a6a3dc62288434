# Two set-up commands (see README): `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/jaxtrack: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/jaxtrack

.PHONY: install demo test bench
install: $(BIN)/jaxtrack

demo: install
	$(BIN)/jaxtrack demo

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests

bench: install
	$(BIN)/python benchmarks/tracking_speed.py
