# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest bench clean phoenix

$(STAMP): pyproject.toml integrations/langgraph/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,otlp,plot]' -e 'integrations/langgraph[postgres]'
	touch $(STAMP)

install: $(STAMP)

# Arize Phoenix for the telemetry round-trip test (tests/test_telemetry_phoenix.py). It pins its own dependencies,
# so it lives in its own venv; the stamp names the version, so bumping it reinstalls.
PHOENIX_VERSION ?= 20.26.1
PHOENIX_STAMP   := .venv-phoenix/.installed-$(PHOENIX_VERSION)

$(PHOENIX_STAMP):
	test -x .venv-phoenix/bin/python || $(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet --upgrade pip
	.venv-phoenix/bin/python -m pip install --quiet 'arize-phoenix==$(PHOENIX_VERSION)'
	touch $(PHOENIX_STAMP)

phoenix: $(PHOENIX_STAMP)

demo: install
	$(BIN)/critic-guard demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
