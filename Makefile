# phoenix-resources — `make run` starts everything locally; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/phoenix-resources
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: deps system-deps venv native jars asyncapi-specs proto asyncapi run stack-up stack-down \
        stack-status migrate test test-unit lint fmt fuzz docs lock soak audit bench \
        bench-quick bench-peers bench-profile bench-tracing clean

deps: system-deps venv jars asyncapi-specs native ## everything a fresh machine lacks

system-deps:
	@deploy/local/system-deps.sh

venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

NATIVE_STAMP := $(VENV)/.native
native: venv ## the compiled hot path (optional): built and installed when cargo is present
	@if command -v cargo >/dev/null; then $(MAKE) --no-print-directory $(NATIVE_STAMP); \
	else echo "cargo not found: the compiled hot path is not built (the worker runs the Python code)"; fi

$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml \
                 native/phoenix_resources_native.pyi $(wildcard native/src/*.rs)
	@echo "building the compiled hot path (native/, cargo + maturin; ~1 minute)"
	@$(PY) -m pip install -q ./native
	@touch $(NATIVE_STAMP)

jars: venv
	@$(PY) -m phoenix_resources.devstack fetch

asyncapi-specs: venv ## the official AsyncAPI JSON Schemas (npm @asyncapi/specs, pinned) for the tests
	@$(PY) -m tests.support.asyncapi_specs

proto: venv ## regenerate src/phoenix_resources/grpc_gen from proto/ (grpcio-tools, mypy-protobuf)
	@$(PY) -m tests.support.protogen

asyncapi: venv ## regenerate schemas/asyncapi.yaml from schemas/*.avsc and the default settings
	@$(CLI) asyncapi --defaults --output schemas/asyncapi.yaml

stack-up: deps ## the persistent local Kafka (127.0.0.1:9092) and PostgreSQL (127.0.0.1:55432)
	@$(PY) -m phoenix_resources.devstack up

stack-down: venv
	@$(PY) -m phoenix_resources.devstack down

stack-status: venv
	@$(PY) -m phoenix_resources.devstack status

migrate: venv
	@$(CLI) migrate upgrade

run: stack-up migrate ## worker + relay + HTTP API in the foreground; Ctrl-C stops
	@PHOENIX_READ_DATABASE_URL=$${PHOENIX_READ_DATABASE_URL:-postgresql://phoenix_api@127.0.0.1:$${PHOENIX_LOCAL_PG_PORT:-55432}/phoenix} \
	  exec $(CLI) run

test: deps lint ## lint, then every test against a throwaway real Kafka + PostgreSQL
	@$(PY) -m phoenix_resources.devstack ephemeral -- \
	  $(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-unit: venv
	@$(PY) -m pytest -m unit $(PYTEST_ARGS)

SOAK_MINUTES ?= 10
SOAK_SEED ?= 1
soak: deps ## the fault kit on a private stack: SOAK_MINUTES of faults, then the checks (docs/operations.md)
	@$(CLI) soak --minutes $(SOAK_MINUTES) --seed $(SOAK_SEED)

audit: venv ## known vulnerabilities in the installed dependencies (pip-audit; needs PyPI's or OSV's API)
	@$(PY) -m pip install -q pip-audit
	@$(VENV)/bin/pip-audit --skip-editable --strict

fuzz: venv ## the codec fuzz properties at full size (>100,000 generated inputs; tests/fuzz)
	@HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/fuzz -m unit -p no:cacheprovider -q $(PYTEST_ARGS)

lint: venv
	@$(VENV)/bin/ruff check src tests bench
	@$(VENV)/bin/mypy

bench: stack-up ## full side-by-side benchmark (see docs/performance.md)
	@$(PY) -m bench.run --mode full

bench-quick: stack-up ## the same, small (~2 minutes)
	@$(PY) -m bench.run --mode quick

bench-tracing: stack-up ## worker + relay with tracing off / 10 % / 100 %, interleaved rounds
	@$(PY) -m bench.run --mode quick --only tracing

bench-peers: stack-up ## Kafka Connect + Debezium JDBC sink on the same workload
	@$(PY) -m bench.run --mode peers

bench-profile: stack-up ## py-spy profile of the worker on the benchmark workload
	@$(PY) -m bench.profile --n 100000

docs: venv ## docs/configuration.md from the settings model
	@$(CLI) config docs --output docs/configuration.md

lock: venv ## requirements/server.lock: the image's pinned, hashed dependencies (from PyPI)
	@$(VENV)/bin/uv pip compile pyproject.toml --extra server --generate-hashes --universal \
	  --python-version 3.11 --custom-compile-command "make lock" -o requirements/server.lock -q

fmt: venv
	@$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
