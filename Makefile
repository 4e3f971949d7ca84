# The two commands a user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := data/demo
DEMO_LIVE := data/demo-live
SPEED ?= 90

.PHONY: demo demo-live test lint format bench kafka-up kafka-down train eval console dashboards obs-up obs-down clean

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

# Live dashboards with no broker: a paced replay, the console and Prometheus on loopback,
# all stopped at the end; the dashboards are drawn into $(DEMO_LIVE)/dashboards/.
demo-live: $(STAMP)
	$(BIN)/python -m dashboards.demo_live --out $(DEMO_LIVE) --speed $(SPEED)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

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
