# The two commands: `make run` and `make test`. Everything else is a step they take.
PYTHON ?= python3.11
VENV := .venv
# Test workers (pytest-xdist): each runs its own share of the tests with its own local Ray.
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install run test test-fast dev bench clean

# Re-install when pyproject changes; the stamp makes `make run` after `make install` instant.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11+ is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m medical_assets.definitions --select '*'

# Lint, the definitions as `dg` loads them in a new user's shell (no DAGSTER_HOME), then the tests
# on TEST_WORKERS workers (a file's tests stay together on one: see medical_assets_tests/conftest.py).
test: install
	$(BIN)/ruff check medical_assets medical_assets_tests benchmarks
	env -u DAGSTER_HOME $(BIN)/dg check defs
	$(BIN)/pytest -ra --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: install
	$(BIN)/pytest -ra -m "not slow"

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev --host 127.0.0.1

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf data $(DAGSTER_HOME)
