"""Poison records on the input topic land in the dead-letter topic and the worker goes on."""

from __future__ import annotations

import time

import orjson

from tests.plugins.kafka import T0, event, watermark_pushers


def _header(record, name: str) -> str:
    return dict(record.headers or []).get(name, b"").decode()


def test_poison_records_are_dead_lettered_with_reasons(kafka_env):
    env = kafka_env
    env.write_config(partitions=2)
    env.create_topics()
    worker = env.start_worker("w1")

    big = b'{"event_id": "big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    poison = [
        b'{"event_id": "broken", "ts": ',  # bad JSON
        event("acct_types", T0 + 5, "wrong-type", prompt_tokens="many"),  # wrong type
        big,  # 1 MiB record, above max_line_bytes
        b"",  # empty value
    ]
    good = [event(f"acct_{i % 5}", T0 + 10 + i, f"good-{i}") for i in range(40)]
    # Poison first, good events after: the good ones prove the worker kept going.
    assert env.produce(poison, key_by_account=False) == 4
    env.produce(good)
    env.produce(watermark_pushers(2, T0 + 3600))

    dead = env.read("dead", until=4, timeout_s=60)
    reasons = {r.value[:20]: _header(r, "vigil-reason") for r in dead}
    assert len(dead) == 4, reasons
    assert reasons[b'{"event_id": "broken'] == "malformed_json"
    assert reasons[poison[1][:20]] == "wrong_type"
    assert reasons[b""] in ("malformed_json", "missing_field", "not_an_object")
    by_reason = {_header(r, "vigil-reason"): r for r in dead}
    assert "too_large" in by_reason
    huge = by_reason["too_large"]
    assert _header(huge, "vigil-original-bytes") == str(len(big))
    # Unkeyed records with a readable account go through the repartition topic first.
    sources = {env.topic("input"), env.topic("repartition")}
    assert all(_header(r, "vigil-source-topic") in sources for r in dead)
    assert "prompt_tokens" in _header(by_reason["wrong_type"], "vigil-detail")

    # Every good event reached the engine and was scored when its window closed.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.metric_sum("vigil_events_processed_total") >= len(good):
            break
        time.sleep(0.5)
    m = worker.metrics()
    assert m["vigil_events_processed_total"] >= len(good)
    assert m["vigil_events_consumed_total"] == len(poison) + len(good) + 2
    rejected = sum(v for k, v in m.items() if k.startswith("vigil_events_rejected_total"))
    assert rejected == len(poison)
    assert worker.alive()
    code, body = worker.get("/health")
    assert code == 200
    assert orjson.loads(body)["events_consumed"] == m["vigil_events_consumed_total"]
