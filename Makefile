# careline: two commands on a fresh machine.
#   make run   builds both environments, trains the NLU model if needed, starts everything
#   make test  builds what it needs, starts Redis/PostgreSQL if installed, runs all tests
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY311    ?= python3.11
VENV     := .venv
NLU_VENV := .venv-nlu
PIP_FLAGS := --disable-pip-version-check --no-input -q

.PHONY: help run test lint fmt deps env nlu-env services browser train eval clean

help:
	@echo "make run    start careline (builds environments and trains the model if needed)"
	@echo "make test   run the whole test suite (lint + pytest)"
	@echo "make train  train the NLU model if config.yml or data/ changed"
	@echo "make eval   score the NLU model on the held-out split"
	@echo "make lint   ruff, mypy (strict on bot/core and bot/conversation), the layer rules"

run:
	@$(MAKE) --no-print-directory -j2 env nlu-env
	$(VENV)/bin/careline train
	$(VENV)/bin/careline run

# The suite must leave the checkout as it found it (tests write to temporary folders only).
# It runs on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time: each
# test has its own Redis prefix and SQL schema or file, so they do not meet. Three on two
# cores: much of the suite waits on sockets, subprocesses and timers rather than the CPU.
TEST_WORKERS ?= 3
test: deps
	@$(MAKE) --no-print-directory lint
	@before="$$(scripts/checkout-state.sh)"; $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	  if [ "$$before" != "$$(scripts/checkout-state.sh)" ]; then \
	    echo "ERROR: the test run changed files in the checkout:" >&2; git status --short >&2; exit 1; \
	  fi; exit $$rc

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m bot.tools.layers --check >/dev/null || $(VENV)/bin/python -m bot.tools.layers --check

fmt: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

train: env nlu-env
	$(VENV)/bin/careline train

eval: env nlu-env
	$(VENV)/bin/careline nlu eval

# Both environments, the services and the browser, side by side: the NLU environment takes
# longest to build and nothing needs it before the tests do.
deps:
	@$(MAKE) --no-print-directory -j4 env nlu-env services browser

services:
	@scripts/ensure-services.sh

# Browser tests drive Debian's Chromium through the playwright package (never a downloaded
# browser). Installed here when missing; if that is impossible the browser tests fail saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "WARNING: could not install chromium; the browser tests will fail" >&2; }

# The gateway environment (Python 3.11, current releases), from a full lock: no resolver run.
env: $(VENV)/.stamp
$(VENV)/.stamp: requirements/gateway.lock pyproject.toml
	@echo "building $(VENV) (gateway, Python 3.11) ..."
	$(PY311) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps -r requirements/gateway.lock
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@

# The NLU environment (Rasa 3.6 needs Python <= 3.10), from a full lock of `rasa==3.6.21`
# plus `tokenizers`, and the pretrained token vectors the pipeline reads at training time.
EMBEDDINGS := var/embeddings/wordllama-l2-supercat-256
# The script is cheap when the vectors are in place (it checks DEST/SOURCE), so it always runs.
nlu-env: $(NLU_VENV)/.stamp
	@scripts/fetch-embeddings.sh $(NLU_VENV)/bin/pip $(EMBEDDINGS)

$(NLU_VENV)/.stamp: requirements/nlu.lock
	@echo "building $(NLU_VENV) (Rasa 3.6.21, Python 3.10); the first build takes a few minutes ..."
	PY310="$$(scripts/find-python310.sh)" && "$$PY310" -m venv $(NLU_VENV)
	$(NLU_VENV)/bin/pip install $(PIP_FLAGS) "pip==24.0"
	$(NLU_VENV)/bin/pip install $(PIP_FLAGS) --no-deps -r requirements/nlu.lock
	@touch $@

clean:
	rm -rf $(VENV) $(NLU_VENV) var .pytest_cache .ruff_cache
