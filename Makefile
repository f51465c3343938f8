# Quick start: `make train` trains the default model, `make test` runs the test suite
# (`make lint`: ruff, configured in pyproject.toml).
# Each target creates .venv with the pinned dependencies of both parts first (once).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
ARGS ?=
TEST_WORKERS ?= 2

.PHONY: venv train test tune lint

venv: $(VENV)/.installed

$(VENV)/.installed: $(wildcard requirements*.txt) setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

train: venv
	$(PY) -m trainer.task $(ARGS)

tune: venv
	$(PY) -m tuner run hptuning_config.yaml $(ARGS)

# Two workers (pytest-xdist), each test module whole on one (its fixtures are built once): most
# tests wait on the processes they start, so two fit on two cores (30 min instead of 43 here).
# The modules go out in collection order (tests/conftest.py puts the longest first), not
# xdist's default of the most tests first, which started the image build last.
test: venv
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(ARGS)

lint: venv
	$(PY) -m ruff check .
