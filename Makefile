# Quick start: `make train` trains the default model, `make test` runs the test suite
# (`make lint`: ruff, configured in pyproject.toml).
# Each target creates .venv with the pinned dependencies of both parts first (once).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
ARGS ?=

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

test: venv
	$(PY) -m pytest tests $(ARGS)

lint: venv
	$(PY) -m ruff check .
