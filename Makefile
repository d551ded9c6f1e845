# The front door. `make run` starts the whole platform locally; `make test` passes the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
BENCH_FLAGS ?=

.PHONY: help install lock run test test-fast test-slow test-cluster image test-image lint typecheck format bench soak charts compose-up clean

help:
	@echo "make run        start the whole platform locally (broker, Redis, SMTP peer, every service)"
	@echo "make test       lint + typecheck + the default test suite (unit, integration, end-to-end, charts)"
	@echo "make test-slow  soak and chaos runs"
	@echo "make test-cluster the end-to-end email, SMS and idempotency tests against a three-master Valkey cluster"
	@echo "make bench      end-to-end throughput and latency, with references measured in the same run"
	@echo "make soak       20 minutes of steady load: rate, p99 and RSS per minute (not in CI)"
	@echo "make charts     render and validate the Helm chart scenarios offline"
	@echo "make image      build herald:local (podman, or docker where one answers) and print its size"
	@echo "make test-image build the image and run every service from it against the local broker and peers"
	@echo "make lock       refresh requirements.lock and requirements-dev.lock from pyproject.toml"

# Every dependency (test and dev extras included) from the lock, each file checked against its hash;
# then Herald itself, editable, without dependencies.
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The locks: requirements-dev.lock (every extra, for make install and CI) and requirements.lock (what the
# image runs, pinned to the same versions). Versions already locked are kept; a dependency added to
# pyproject.toml is resolved and added. LOCK_UPGRADE=1 moves every pin to the newest allowed release.
LOCK_FLAGS := --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra test $(LOCK_FLAGS) \
		$(if $(LOCK_UPGRADE),--upgrade) -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c requirements-dev.lock -o requirements.lock

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
	$(BIN)/pytest -m "not slow and not image and not cluster" -n 3 --dist loadfile $(PYTEST_FLAGS)

# pytest exits 5 when a tier selects no test; an empty tier is not a failure.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_FLAGS) || [ $$? -eq 5 ]

# The same end-to-end modules with Redis Cluster (HERALD_TEST_REDIS=cluster: tests/conftest.py starts
# three Valkey masters per worker and hands out a redis+cluster:// URL), plus the checks marked cluster.
CLUSTER_TESTS := tests/cluster tests/integration/test_email_e2e.py tests/integration/test_ch_channels.py \
	tests/integration/test_intake.py tests/integration/test_policy_e2e.py tests/integration/test_autopipeline.py \
	tests/integration/test_ch_retries.py tests/integration/test_campaigns.py tests/integration/test_dead_letters.py
test-cluster: $(STAMP)
	HERALD_TEST_REDIS=cluster $(BIN)/pytest -m "not slow and not image" -n 2 --dist loadfile \
		$(PYTEST_FLAGS) $(CLUSTER_TESTS)

# herald:local from the Dockerfile (tools/image/build.sh): podman, or docker where one answers; a local
# Python base when no registry answers. Prints the size and fails over 200 MB.
image:
	tools/image/build.sh

# Every service from the image against the broker, Valkey and provider peers started on the host.
test-image: $(STAMP) image
	$(BIN)/pytest -m image tests/image -p no:cacheprovider $(PYTEST_FLAGS)

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
