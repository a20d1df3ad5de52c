# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest pytest-oldest bench benchmarks clean phoenix bench-envs

# .venv holds the newest LangChain the integration's ranges allow (named with --upgrade, so an existing .venv moves
# up too when a pyproject changes); .venv-oldest below holds the oldest supported.
$(STAMP): pyproject.toml integrations/langgraph/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,otlp,plot]' -e 'integrations/langgraph[postgres]' \
		--upgrade langchain langchain-core langgraph
	touch $(STAMP)

install: $(STAMP)

# Arize Phoenix for the telemetry round-trip test (integrations/langgraph/tests/test_pilot_phoenix.py). It pins its own dependencies,
# so it lives in its own venv; the stamp names the version, so bumping it reinstalls.
PHOENIX_VERSION ?= 20.26.1
PHOENIX_STAMP   := .venv-phoenix/.installed-$(PHOENIX_VERSION)

$(PHOENIX_STAMP):
	test -x .venv-phoenix/bin/python || $(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet --upgrade pip
	.venv-phoenix/bin/python -m pip install --quiet 'arize-phoenix==$(PHOENIX_VERSION)'
	touch $(PHOENIX_STAMP)

phoenix: $(PHOENIX_STAMP)

# Real task environments for benchmarks/envs and their tests: TextWorld (the `bench` extra) and BFCL v4, whose
# bfcl-eval goes in without its dependencies (see pyproject.toml). The stamp names the version, so bumping it
# reinstalls. Cold install about 30 s (jericho is built from source, needs a C compiler).
BFCL_EVAL_VERSION ?= 2026.3.23
BENCH_STAMP       := $(VENV)/.bench-envs-$(BFCL_EVAL_VERSION)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m pip install --quiet --no-deps 'bfcl-eval==$(BFCL_EVAL_VERSION)'
	touch $(BENCH_STAMP)

bench-envs: $(BENCH_STAMP)

# The main job: `critic-guard demo`, a shadow pilot of a guarded create_agent agent on 150 simulated tasks (noisy
# critic, recoveries and disruptions; critic_guard_langgraph.demo:suite), SQLite store critic_guard.db and trace file
# critic_guard_traces.jsonl here, ending with the decision. Rerunning resumes (nothing left to do: the same decision).
# `critic-guard demo --paper` analyses the bundled paper pilot instead.
demo: install
	$(BIN)/critic-guard demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The integration tests also run on the oldest LangChain the ranges in integrations/langgraph/pyproject.toml accept:
# langchain 1.3.0 (the lower bound) needs langchain-core>=1.4 and langgraph>=1.2,<1.3, so those are the oldest.
# Own venv with the `test` extra only; about 1 min to install cold, then the integration suite once more.
OLDEST_LANGCHAIN ?= 'langchain==1.3.0' 'langchain-core==1.4.0' 'langgraph==1.2.0'
OLDEST           := .venv-oldest
OLDEST_STAMP     := $(OLDEST)/.installed

$(OLDEST_STAMP): pyproject.toml integrations/langgraph/pyproject.toml Makefile
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -e '.[test,postgres,otlp,plot]' -e 'integrations/langgraph[postgres]' \
		$(OLDEST_LANGCHAIN)
	touch $(OLDEST_STAMP)

# Each run prints the versions it tests in pytest's header (conftest.py).
pytest: install bench-envs phoenix
	@echo "== all tests, newest LangChain the ranges allow (.venv)"
	$(BIN)/python -m pytest

pytest-oldest: $(OLDEST_STAMP) phoenix
	@echo "== integration tests, oldest supported LangChain ($(OLDEST)): $(OLDEST_LANGCHAIN)"
	$(OLDEST)/bin/python -m pytest integrations/langgraph/tests -m "not agent_server"  # langgraph-cli: dev extra

test: lint typecheck pytest pytest-oldest

bench: install
	$(BIN)/python -m benchmarks.overhead

# Issue 6's benchmark in one command (about 9 minutes on 2 cores): decision quality against the paper's rule and the
# oracle SPRT, costs measured on the simulated guarded agent, and pilots on TextWorld and BFCL v4.
benchmarks: install bench-envs
	$(BIN)/python -m benchmarks.decision --json benchmarks/decision.json
	$(BIN)/python -m benchmarks.agent_costs --json benchmarks/agent_costs.json
	$(BIN)/python -m benchmarks.real_envs --json benchmarks/real_envs.json

clean:
	rm -rf $(VENV) $(OLDEST) .mypy_cache .pytest_cache .ruff_cache .hypothesis
