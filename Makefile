# The two commands a user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := data/demo
DEMO_LIVE := data/demo-live
SPEED ?= 90
# make kafka-up BROKERS=3: a 3-node KRaft cluster (replication factor 3, min.insync.replicas 2)
BROKERS ?= 1

.PHONY: demo demo-live test test-unit sanitize lint format bench kafka-up kafka-down train eval console dashboards obs-up obs-down clean

$(STAMP): pyproject.toml constraints.txt streams/contract/_decode.c streams/contract/_seen.c \
		streams/features/_pairs.c streams/kafka/_records.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil generate --accounts 2000 --hours 24 --seed 7 --out $(DEMO)
	$(BIN)/vigil replay $(DEMO)/events.jsonl.gz --alerts $(DEMO)/alerts.jsonl \
		--dead-letters $(DEMO)/dead-letters.jsonl --labels $(DEMO)/labels.json --store $(DEMO)/vigil.db

# Live dashboards with no broker: a paced replay, the console and Prometheus on loopback,
# all stopped at the end; the dashboards are drawn into $(DEMO_LIVE)/dashboards/.
demo-live: $(STAMP)
	$(BIN)/python -m dashboards.demo_live --out $(DEMO_LIVE) --speed $(SPEED)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(MAKE) sanitize
	# The unit tier on both cores; the console and observability tiers on both cores, a
	# file per worker (each starts its own PostgreSQL, Prometheus, Chromium); then the Kafka
	# tier on two processes, a file each at a time: the three-node cluster's fault soak,
	# which mostly waits out its faults, starts first (tests/conftest.py orders it so) and
	# the other files go to whichever process is free.
	# Each runs whatever the one before gives, and any failing fails the target.
	$(BIN)/python -m pytest tests/unit -n 2 --dist worksteal; unit=$$?; \
		$(BIN)/python -m pytest tests/integration/console tests/integration/obs -n 2 \
			--dist loadfile; services=$$?; \
		$(BIN)/python -m pytest tests --ignore=tests/unit --ignore=tests/integration/console \
			--ignore=tests/integration/obs -n 2 --dist loadfile \
			--no-loadscope-reorder --durations=30; kafka=$$?; \
		test $$unit -eq 0 -a $$services -eq 0 -a $$kafka -eq 0

# The inner loop: no services, on both cores (about a minute on this 2-core machine).
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q -n 2 --dist worksteal

# The decoder, record-reader, id-set and distinct-pairs suites and a seeded mutation fuzz of every compiled
# entry point (over a million inputs at this scale), with the C extensions rebuilt under
# AddressSanitizer and UndefinedBehaviorSanitizer in a separate folder (tests/sanitize.py).
SANITIZE_DIR := build/sanitize
SANITIZE_TESTS := tests/unit/contract/test_decoder_parity.py \
	tests/unit/contract/test_contract_limits.py tests/unit/kafka/test_routing_top_level.py \
	tests/unit/contract/test_seen.py tests/unit/kafka/test_fetch.py tests/unit/contract/test_fuzz.py \
	tests/unit/kafka/test_fetch_fuzz.py tests/unit/kafka/test_corrupt_batch.py \
	tests/unit/kafka/test_bundles.py tests/unit/features/test_groups.py
sanitize: $(STAMP)
	$(BIN)/python -m tests.sanitize build $(SANITIZE_DIR)
	VIGIL_FUZZ_SCALE=3 $(BIN)/python -m tests.sanitize run $(SANITIZE_DIR) -- -q \
		-n 2 --dist worksteal -p no:cacheprovider $(SANITIZE_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: $(STAMP)
	$(BIN)/vigil train --out models/artifacts

eval: $(STAMP)
	$(BIN)/vigil eval scenarios

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

console: $(STAMP)
	$(BIN)/vigil console --store $(DEMO)/vigil.db

dashboards: $(STAMP)
	$(BIN)/python -m dashboards.build

# The stack has no default passwords; the first `make obs-up` writes random ones here.
deploy/.env:
	umask 077 && $(PY) -c "import secrets; [print(f'{k}={secrets.token_hex(32)}') for k in ('VIGIL_DB_PASSWORD', 'VIGIL_CONSOLE_SECRET', 'GRAFANA_ADMIN_PASSWORD')]" > $@
	@echo "wrote random passwords to $@ (Grafana admin password: GRAFANA_ADMIN_PASSWORD there)"

obs-up: deploy/.env
	docker compose -f deploy/docker-compose.yml up -d --build

obs-down:
	docker compose -f deploy/docker-compose.yml down

kafka-up:
	BROKERS=$(BROKERS) deploy/kafka/kafka-up.sh

kafka-down:
	BROKERS=$(BROKERS) deploy/kafka/kafka-down.sh

clean:
	rm -rf $(VENV) data build *.egg-info
