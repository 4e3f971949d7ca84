"""A detector that raises inside the worker: its events are dead-lettered and counted.

The rule below fires on every window, and the worker process is started with a
`sitecustomize` that makes the rules detector raise KeyError while explaining every alert
it would raise. (Until 2026-12-05 a rule text naming an unknown placeholder did that; the
config checks now refuse such a rule at load.) Nothing may be lost silently: each event of
a failing window lands in the dead-letter topic with the error, and consumed = processed +
rejected + duplicates.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from tests.plugins.kafka import T0, event, watermark_pushers

RULE = """
[[rules]]
name = "every_window"
feature = "requests"
op = ">="
threshold = 1
score = 0.9
"""

# Run by the worker's interpreter at start-up, before the command.
RAISING_EXPLAIN = """
from detectors.rules import RulesDetector

def _explain(self, batch, i):
    raise KeyError("injected by test_kafka_detector_error")

RulesDetector.explain = _explain
"""

REPO = Path(__file__).resolve().parents[3]


def test_raising_detector_dead_letters_its_events(kafka_env):
    env = kafka_env
    env.write_config(partitions=2, extra=RULE)
    env.create_topics()
    inject = env.root / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(RAISING_EXPLAIN)
    path = os.pathsep.join(p for p in (str(inject), str(REPO), os.environ.get("PYTHONPATH")) if p)
    worker = env.start_worker("w", env={"PYTHONPATH": path})

    events = [event(f"acct_{i % 4}", T0 + 10 + i, f"bad-{i}") for i in range(40)]
    env.produce(events)
    env.produce(watermark_pushers(2, T0 + 3600, tag="end"))

    dead = env.read("dead", until=len(events), timeout_s=90)
    headers = [dict(r.headers) for r in dead]
    ids = {orjson.loads(r.value)["event_id"] for r in dead}
    assert ids == {f"bad-{i}" for i in range(40)}
    assert {h["vigil-reason"] for h in headers} == {b"processing_error"}
    assert all(b"KeyError" in h["vigil-detail"] for h in headers)

    deadline = time.monotonic() + 30
    while True:
        m = worker.metrics()
        rejected = m.get('vigil_events_rejected_total{reason="processing_error"}', 0)
        consumed = m.get("vigil_events_consumed_total", 0)
        accounted = (
            m.get("vigil_events_processed_total", 0)
            + sum(v for k, v in m.items() if k.startswith("vigil_events_rejected_total"))
            + m.get("vigil_events_duplicate_total", 0)
        )
        if rejected >= len(events) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rejected == len(events)
    # The pushers still wait in open windows; everything else is accounted for.
    assert consumed == len(events) + 2
    assert accounted == len(events)
    assert worker.alive()
    assert worker.get("/health")[0] == 200
