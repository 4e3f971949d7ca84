"""A worker owns every input partition it is assigned, including ones with nothing new to read.

Faust revokes every partition on every rebalance and assigns them afresh, and a worker opens
a partition's engine only on its first batch. Partitions whose records were all processed
before a rebalance get no batch afterwards, yet they are owned: they must count in
`vigil_owned_partitions`, and records written to them later must be fetched and processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from tests.plugins.kafka import T0, WorkerProc, watermark_pushers

PARTITIONS = 4


def _wait(what: str, ok: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}", pytrace=False)
        time.sleep(0.3)


def _owned(w: WorkerProc) -> int:
    return int(w.metric_sum("vigil_owned_partitions"))


def test_idle_partitions_stay_owned_across_rebalances(kafka_env):
    env = kafka_env
    env.write_config(partitions=PARTITIONS)
    env.create_topics(audit=True)
    a = env.start_worker("a", audit=True)
    env.produce(watermark_pushers(PARTITIONS, T0, tag="first"))
    _wait(
        "a processed one event per partition",
        lambda: a.metric_sum("vigil_events_consumed_total") >= PARTITIONS,
    )
    _wait("a owns every partition", lambda: _owned(a) == PARTITIONS)
    # Every partition checkpointed, so the committed offsets are past all records.
    _wait(
        "a checkpointed every partition",
        lambda: all(
            a.metrics().get(f'vigil_checkpoint_state_bytes{{partition="{p}"}}', 0) > 0
            for p in range(PARTITIONS)
        ),
    )

    # b joins: the group splits the partitions, none of which has anything new to read.
    b = env.start_worker("b", audit=True)
    _wait("b's join rebalanced a", lambda: a.metric_sum("vigil_rebalances_total") >= 2)
    _wait(
        "a and b own the partitions between them",
        lambda: _owned(a) + _owned(b) == PARTITIONS and _owned(a) > 0 and _owned(b) > 0,
    )

    # b leaves: a is assigned everything again, still with nothing new to read.
    b.stop()
    _wait("a owns every partition again", lambda: _owned(a) == PARTITIONS)
    code, body = a.get("/health")
    assert code == 200 and orjson.loads(body)["owned_partitions"] == PARTITIONS, body

    # And a fetches from every one of them: one new event per partition is processed.
    env.produce(watermark_pushers(PARTITIONS, T0 + 3600, tag="later"))
    offsets = {
        (r.partition, r.offset): orjson.loads(r.value)["event_id"]
        for r in env.read("input", until=2 * PARTITIONS)
    }
    later = {eid for eid in offsets.values() if eid.startswith("later-")}
    assert len(later) == PARTITIONS

    def processed() -> set[str]:
        seen = set()
        for rec in env.read("audit", idle_s=1.0):
            body = orjson.loads(rec.value)
            seen |= {offsets[(body["partition"], off)] for off in body["offsets"]}
        return seen

    _wait("every later event was processed", lambda: later <= processed())
    assert "resumed from checkpoint" in a.log()
