# Two commands on a fresh machine: `make run` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export LOCKZERO_TEST_PG_DSN ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test bench lint typecheck install services clean demo worker

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/lockzero migrate
	$(BIN)/lockzero serve

test: $(STAMP) services
	$(BIN)/python -m pytest -q -m "not bench" tests

demo: $(STAMP) services
	$(BIN)/lockzero demo

bench: $(STAMP) services
	$(BIN)/python -m pytest -q -s -m bench tests/bench

FOLDERS := api engine eventstore providers workers

lint: typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy sees the folders under their installed names (lockzero.<folder>) through links; see pyproject's [tool.mypy].
typecheck: $(STAMP)
	@rm -rf .typecheck && mkdir -p .typecheck/lockzero
	@for f in $(FOLDERS); do ln -s ../../$$f .typecheck/lockzero/$$f; done
	$(BIN)/mypy

services:
	@bash deploy/ensure-services.sh

clean:
	rm -rf $(VENV) .lockzero .typecheck build *.egg-info
