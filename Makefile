# plait: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORE_PROTOS := $(shell find protos/plaitidl/core -name '*.proto' | sort)
SERVICE_PROTOS := $(shell find protos/plaitidl/service -name '*.proto' | sort)
# What `make breaking` compares the protos with.
BREAKING_AGAINST ?= .git\#branch=main

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The tasks' own Python for plait.flyte: flytekit (the `bench` extra's pin) and plait[flyte], in
# a venv of its own, as a Flyte image would hold them; the engine's .venv never imports flytekit.
FLYTE_VENV ?= .venv-flyte

$(FLYTE_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(FLYTE_VENV)
	$(FLYTE_VENV)/bin/pip install -q --upgrade pip
	$(FLYTE_VENV)/bin/pip install -q -e '.[flyte,bench]'
	touch $@

.PHONY: flyte-env
flyte-env: $(FLYTE_VENV)/.installed ## Create .venv-flyte: flytekit + plait[flyte], the tasks' Python in plait.flyte tests.

examples/node/node_modules/.package-lock.json: examples/node/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd examples/node && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: skipping examples/node (its test needs Node.js 18+ and npm)"; fi

# The console's front end (console/, TypeScript): npm installs from the lock file, Vite builds it
# into the engine's package, which serves it. Nothing is fetched at run time.
CONSOLE_STATIC := engine/plait_engine/console/static/index.html
CONSOLE_SOURCES := $(shell find console/src console/index.html console/vite.config.ts -type f 2>/dev/null)

console/node_modules/.package-lock.json: console/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd console && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the console's front end is not built (it needs Node.js 20+ and npm)"; fi

$(CONSOLE_STATIC): console/node_modules/.package-lock.json $(CONSOLE_SOURCES)
	@if command -v npm >/dev/null; then cd console && npm run -s build; fi

.PHONY: console
console: $(CONSOLE_STATIC) ## Build the console's front end (npm ci, vite build).

.PHONY: install
install: $(VENV)/.installed examples/node/node_modules/.package-lock.json $(CONSOLE_STATIC) ## Create .venv, install plait (dev extras, editable), the Node example's packages, and build the console.

.PHONY: demo
demo: install ## Run the three seed examples on the embedded engine; say how to see them in the console.
	$(BIN)/plait run examples/dynamic_workflow.py dynamic_wf --s1 Pear --s2 Earth
	$(BIN)/plait run examples/merge_sort.py merge_sort \
	  --numbers '[1813, 3105, 3260, 2634, 383, 7037, 3291, 2403, 315, 7164]' --numbers_count 10
	$(BIN)/plait run examples/generate_others.py fan_out --tasks_count 10
	@echo
	@echo "See their graphs in the console (the merge sort's recursion too):"
	@echo "  $(BIN)/plait console        # then open http://127.0.0.1:8090/ (Ctrl-C stops it)"

.PHONY: gen
gen: install ## Regenerate gen/python from protos/ (the only writer of gen/).
	rm -rf gen/python/plaitidl
	mkdir -p gen/python
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
	  --python_out=gen/python --mypy_out=quiet:gen/python $(CORE_PROTOS)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
	  --python_out=gen/python --grpc_python_out=gen/python \
	  --mypy_out=quiet:gen/python --mypy_grpc_out=quiet:gen/python $(SERVICE_PROTOS)
	find gen/python/plaitidl -type d -exec touch {}/__init__.py \;
	touch gen/python/plaitidl/py.typed
	rm -rf console/src/gen
	$(BIN)/buf generate --template console/buf.gen.yaml

.PHONY: check-gen
check-gen: install ## Fail when gen/ or console/src/gen differ from what the protos generate.
	@tmp=$$(mktemp -d) && cp -r gen "$$tmp/gen.before" && cp -r console/src/gen "$$tmp/ts.before" && \
	  $(MAKE) -s gen >/dev/null && \
	  if ! diff -r -x __pycache__ "$$tmp/gen.before" gen >/dev/null || \
	     ! diff -r -x __pycache__ "$$tmp/ts.before" console/src/gen >/dev/null; then \
	    diff -r -x __pycache__ "$$tmp/gen.before" gen | head -20; diff -r -x __pycache__ "$$tmp/ts.before" console/src/gen | head -20; \
	    rm -rf gen console/src/gen; cp -r "$$tmp/gen.before" gen; cp -r "$$tmp/ts.before" console/src/gen; \
	    echo "gen/ or console/src/gen is stale: run 'make gen' and commit"; exit 1; fi; \
	  rm -rf "$$tmp"; echo "gen/ and console/src/gen are current"

.PHONY: lint
lint: install ## buf lint + format, ruff, mypy --strict, the console's lint (Biome) and type check (tsc).
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sdk/plait engine/plait_engine tests examples/*.py examples/process/*.py benchmarks
	cd console && npm run -s lint && npm run -s typecheck

.PHONY: breaking
breaking: install ## buf breaking against main (BREAKING_AGAINST=... to change).
	$(BIN)/buf breaking --against '$(BREAKING_AGAINST)'

.PHONY: pytest
pytest: install flyte-env ## Only the test suite (every tier).
	PLAIT_FLYTE_PYTHON=$(abspath $(FLYTE_VENV))/bin/python $(BIN)/pytest -q

.PHONY: test-unit test-integration test-system
test-unit: install ## Unit tests: pure functions, the scheduler over the in-memory store.
	$(BIN)/pytest -q tests/unit
test-integration: install flyte-env ## Integration tests: real gRPC servers, SQLite files, processes.
	PLAIT_FLYTE_PYTHON=$(abspath $(FLYTE_VENV))/bin/python $(BIN)/pytest -q tests/integration
test-system: install ## System tests: engines and workers as processes, killed and restarted.
	$(BIN)/pytest -q tests/system

# The orchestrator integrations (integrations/README.md): each in its own virtualenv, with plait
# installed from this checkout next to the orchestrator, at the versions of its constraints.txt.
INTEGRATIONS := airflow dagster prefect
IVENVS := integrations/.venvs

$(IVENVS)/%/.installed: integrations/%/pyproject.toml integrations/%/constraints.txt pyproject.toml
	test -x $(IVENVS)/$*/bin/python || $(PY) -m venv $(IVENVS)/$*
	$(IVENVS)/$*/bin/pip install -q -c integrations/$*/constraints.txt -e . -e 'integrations/$*[test]'
	touch $@

.PHONY: test-integrations
test-integrations: $(foreach i,$(INTEGRATIONS),$(IVENVS)/$(i)/.installed) ## Airflow, Dagster, Prefect integrations: mypy and their tests.
	@for i in $(INTEGRATIONS); do \
	  echo "== integrations/$$i"; \
	  (cd integrations/$$i && ../.venvs/$$i/bin/mypy && ../.venvs/$$i/bin/pytest -q) || exit 1; \
	done

.PHONY: test
test: lint check-gen breaking pytest test-integrations ## Everything CI checks: lint, check-gen, buf breaking, all tests.

.PHONY: bench
bench: install ## Benchmarks against flytekit, Prefect 3, Ray, DBOS; tables and targets, never fail (QUICK=1, NO_PEERS=1).
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick) $(if $(NO_PEERS),--no-peers)

.PHONY: bench-1m
bench-1m: install ## The 1,000,000-node fan-out in one dynamic, embedded (a few minutes).
	$(BIN)/python -m benchmarks --million

.PHONY: serve
serve: install ## Start the engine's gRPC server on localhost:8089.
	$(BIN)/plait serve --address 127.0.0.1:8089
