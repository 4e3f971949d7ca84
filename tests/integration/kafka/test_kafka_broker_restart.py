"""The broker restarts under a running worker: it reconnects and loses nothing."""

from __future__ import annotations

import time

import orjson

from tests.plugins.kafka import T0, KafkaEnv, event, watermark_pushers

N = 4_000


def _processed_ids(env: KafkaEnv, produced: dict) -> set[str]:
    ids = set()
    for rec in env.read("audit", idle_s=2.0):
        body = orjson.loads(rec.value)
        ids.update(produced[(body["partition"], o)] for o in body["offsets"])
    return ids


def test_worker_survives_broker_restart(restartable_kafka, tmp_path, topic_prefix):
    env = KafkaEnv(restartable_kafka.bootstrap, topic_prefix, tmp_path)
    env.write_config(partitions=2)
    env.create_topics(audit=True)
    try:
        worker = env.start_worker("w", audit=True)
        lines = [event(f"acct_{i % 50}", T0 + i, f"ev-{i}") for i in range(N)]
        env.produce(lines[: N // 2])
        deadline = time.monotonic() + 60
        while worker.metric_sum("vigil_events_consumed_total") < N // 2:
            assert time.monotonic() < deadline, "first half not consumed"
            time.sleep(0.3)

        restartable_kafka.restart()
        assert worker.alive(), worker.log()[-3000:]

        env.produce(lines[N // 2 :])
        env.produce(watermark_pushers(2, T0 + N + 3600, tag="end"))
        produced = {
            (r.partition, r.offset): orjson.loads(r.value)["event_id"]
            for r in env.read("input", until=N + 2)
        }
        want = {f"ev-{i}" for i in range(N)}
        deadline = time.monotonic() + 120
        while not want <= (seen := _processed_ids(env, produced)):
            assert time.monotonic() < deadline, f"{len(want - seen)} events never processed"
            time.sleep(1)
        assert worker.alive()
        # Windows closed after the restart were scored too: processing really resumed.
        deadline = time.monotonic() + 30
        while worker.metric_sum("vigil_events_processed_total") < N:
            assert time.monotonic() < deadline, worker.metrics()
            time.sleep(0.5)
        code, body = worker.get("/health")
        assert code == 200, body
    finally:
        env.close()
