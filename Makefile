# The two commands a user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := data/demo

.PHONY: demo test sanitize lint format bench kafka-up kafka-down train eval console dashboards obs-up obs-down clean

$(STAMP): pyproject.toml constraints.txt streams/_decode.c streams/kafka/_records.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil generate --accounts 2000 --hours 24 --seed 7 --out $(DEMO)
	$(BIN)/vigil replay $(DEMO)/events.jsonl.gz --alerts $(DEMO)/alerts.jsonl \
		--dead-letters $(DEMO)/dead-letters.jsonl --labels $(DEMO)/labels.json --store $(DEMO)/vigil.db

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) sanitize
	$(BIN)/python -m pytest

# The decoder, record-reader and id-set suites and a seeded mutation fuzz of every compiled
# entry point (over a million inputs at this scale), with the C extensions rebuilt under
# AddressSanitizer and UndefinedBehaviorSanitizer in a separate folder (tests/sanitize.py).
SANITIZE_DIR := build/sanitize
SANITIZE_TESTS := tests/test_decoder_parity.py tests/test_contract_limits.py \
	tests/test_routing_top_level.py tests/test_seen.py tests/test_fetch.py tests/test_fuzz.py
sanitize: $(STAMP)
	$(BIN)/python -m tests.sanitize build $(SANITIZE_DIR)
	VIGIL_FUZZ_SCALE=3 $(BIN)/python -m tests.sanitize run $(SANITIZE_DIR) -- -q -s \
		-p no:cacheprovider $(SANITIZE_TESTS) \
		--deselect tests/test_fetch.py::test_the_worker_s_fetch_settings_reach_aiokafka

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: $(STAMP)
	$(BIN)/vigil train

eval: $(STAMP)
	$(BIN)/vigil eval scenarios

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

console: $(STAMP)
	$(BIN)/vigil console --store $(DEMO)/vigil.db

dashboards: $(STAMP)
	$(BIN)/python -m dashboards.build

obs-up:
	docker compose -f deploy/docker-compose.yml up -d --build

obs-down:
	docker compose -f deploy/docker-compose.yml down

kafka-up:
	deploy/kafka/kafka-up.sh

kafka-down:
	deploy/kafka/kafka-down.sh

clean:
	rm -rf $(VENV) data build *.egg-info
