# Two set-up commands (see README): `make demo` and `make test`. Each installs the committed lock for the
# interpreter's Python version (requirements/py3XX.txt for the demo, py3XX-dev.txt with the test-only
# references for the tests) into a fresh .venv whenever that lock changes. `make lock` regenerates the locks.
PYTHON ?= python3
PYTHON312 ?= python3.12
VENV ?= .venv
BIN = $(VENV)/bin
PYVER := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
LOCK = requirements/py$(PYVER).txt
DEV_LOCK = requirements/py$(PYVER)-dev.txt
PIP_TOOLS = pip-tools==7.6.2

# --no-deps: exactly the lock, nothing resolved at install time; --no-build-isolation: the editable build uses
# the locked setuptools. The stamps hold the lock they were made from, so a changed lock rebuilds the venv.
define fresh_venv
	@test -f $(1) || { echo "no lock for Python $(PYVER): $(1) (make lock)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-deps -r $(1)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
endef

$(VENV)/.lock-runtime: $(LOCK) pyproject.toml
	@if [ -f $(VENV)/.lock-dev ] && cmp -s $(VENV)/.lock-dev $(DEV_LOCK) && cmp -s $(VENV)/.lock-runtime $(LOCK); then \
		touch $@; else $(MAKE) --no-print-directory _runtime; fi

_runtime:
	$(call fresh_venv,$(LOCK))
	cp $(LOCK) $(VENV)/.lock-runtime

$(VENV)/.lock-dev: $(DEV_LOCK) $(LOCK) pyproject.toml
	$(call fresh_venv,$(DEV_LOCK))
	cp $(DEV_LOCK) $(VENV)/.lock-dev
	cp $(LOCK) $(VENV)/.lock-runtime

.PHONY: install install-dev demo test bench lock _runtime
install: $(VENV)/.lock-runtime
install-dev: $(VENV)/.lock-dev

demo: install
	$(BIN)/jaxtrack demo

test: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests

bench: install-dev
	$(BIN)/python benchmarks/tracking_speed.py

# One lock per Python version, each resolved by pip under that interpreter (so it sees what pip installs there,
# e.g. the CPU build of torch that lies on disk for 3.11). The dev lock is constrained to the runtime one.
lock:
	$(call compile_lock,$(PYTHON),311)
	$(call compile_lock,$(PYTHON312),312)

define compile_lock
	rm -rf .lockenv && $(1) -m venv .lockenv && .lockenv/bin/python -m pip install -q $(PIP_TOOLS)
	cd requirements && ../.lockenv/bin/pip-compile -q --upgrade --allow-unsafe --strip-extras --all-build-deps \
		--no-emit-find-links --no-emit-index-url -o py$(2).txt ../pyproject.toml
	cd requirements && ../.lockenv/bin/pip-compile -q --upgrade --allow-unsafe --strip-extras --all-build-deps \
		--no-emit-find-links --no-emit-index-url --extra dev -c py$(2).txt -o py$(2)-dev.txt ../pyproject.toml
	rm -rf .lockenv
endef
