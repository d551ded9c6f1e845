# The front door. `make run` starts the whole platform locally; `make test` passes the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
BENCH_FLAGS ?=

.PHONY: help install run test test-fast test-slow lint typecheck format bench soak charts compose-up clean

help:
	@echo "make run        start the whole platform locally (broker, Redis, SMTP peer, every service)"
	@echo "make test       lint + typecheck + the default test suite (unit, integration, end-to-end, charts)"
	@echo "make test-slow  soak and chaos runs"
	@echo "make bench      end-to-end throughput and latency, with references measured in the same run"
	@echo "make soak       20 minutes of steady load: rate, p99 and RSS per minute (not in CI)"
	@echo "make charts     render and validate the Helm chart scenarios offline"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/herald dev

lint: $(STAMP)
	$(BIN)/ruff check libs services tests tools bench
	$(BIN)/ruff format --check libs services tests tools bench

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format libs services tests tools bench
	$(BIN)/ruff check --fix libs services tests tools bench

test: lint typecheck test-fast

# Three workers, one test module each at a time: the integration tests mostly wait on the broker, so the
# default suite takes about half its serial time on two cores. Each worker starts its own broker and Valkey.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -n 3 --dist loadfile $(PYTEST_FLAGS)

# pytest exits 5 when a tier selects no test; an empty tier is not a failure.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_FLAGS) || [ $$? -eq 5 ]

# BENCH_FLAGS=--profile: py-spy flame graphs of every hot process during the SMS run (var/bench/profile).
bench: $(STAMP)
	$(BIN)/python -m bench.e2e $(BENCH_FLAGS)

# SOAK_FLAGS="--minutes 2 --rate 300 --interval 10" for a short run.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_FLAGS)

charts: $(STAMP)
	$(BIN)/python tools/check_charts.py

compose-up:
	docker compose up -d --build

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
