"""Two workers share eight partitions; one is killed with SIGKILL in the middle of the stream.

Every event must be processed at least once, counted end to end by event_id: each worker
writes the offsets of every batch it hands to the engine to an audit topic, and the test
maps offsets back to the event_ids it produced. Re-processing after the kill shows up as
duplicates, reported as a figure. The survivor must take over the dead worker's partitions
from their changelog checkpoints.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import orjson

from tests.plugins.kafka import T0, event, watermark_pushers

PARTITIONS = 8
N_EVENTS = 16_000


def _corpus() -> list[bytes]:
    # 400 accounts, one event every 0.25 s of event time: about 67 minutes, 13 windows.
    return [event(f"acct_{i % 400:04d}", T0 + i * 0.25, f"ev-{i}") for i in range(N_EVENTS)]


def test_kill9_one_of_two_workers_loses_no_event(kafka_env, capsys):
    env = kafka_env
    env.write_config(partitions=PARTITIONS)
    env.create_topics(audit=True)
    a = env.start_worker("a", audit=True)
    b = env.start_worker("b", audit=True)

    lines = _corpus()
    done = threading.Event()

    def produce() -> None:
        for i in range(0, len(lines), 500):
            env.produce(lines[i : i + 500])
            time.sleep(0.05)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    # Kill b once it has done real work and the stream is still flowing.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and b.metric_sum("vigil_events_consumed_total") < 2000:
        time.sleep(0.2)
    assert not done.is_set(), "the stream ended before the kill; make it longer"
    b_owned = b.metric_sum("vigil_owned_partitions")
    assert 0 < b_owned < PARTITIONS
    b.kill9()
    t.join(timeout=300)
    assert done.is_set()
    env.produce(watermark_pushers(PARTITIONS, T0 + N_EVENTS * 0.25 + 3600, tag="end"))

    # Map input offsets to event ids, then collect what the workers processed.
    produced = {
        (r.partition, r.offset): orjson.loads(r.value)["event_id"]
        for r in env.read("input", until=N_EVENTS + PARTITIONS)
    }
    want = {eid for eid in produced.values() if eid.startswith("ev-")}
    assert len(want) == N_EVENTS
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen.clear()
        for rec in env.read("audit", idle_s=2.0):
            body = orjson.loads(rec.value)
            assert body["topic"] == env.topic("input")  # keyed by account: nothing forwarded
            for off in body["offsets"]:
                seen[produced[(body["partition"], off)]] += 1
        if want <= set(seen):
            break
        time.sleep(1)
    missing = want - set(seen)
    assert not missing, f"{len(missing)} events never processed, e.g. {sorted(missing)[:5]}"
    duplicates = sum(c - 1 for eid, c in seen.items() if eid in want)
    with capsys.disabled():
        print(
            f"\nscale-out kill -9: {N_EVENTS} events, {duplicates} processed twice "
            f"({duplicates / N_EVENTS:.2%}); killed worker owned {b_owned:.0f} partitions"
        )

    # The survivor owns everything now and resumed b's partitions from their checkpoints.
    assert a.alive()
    # The group hands b's partitions over only once b's session times out, which can
    # come after every event is already accounted for: wait for it, within a bound.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and a.metric_sum("vigil_owned_partitions") < PARTITIONS:
        time.sleep(0.5)
    assert a.metric_sum("vigil_owned_partitions") == PARTITIONS
    assert a.metric_sum("vigil_rebalances_total") >= 2
    assert "resumed from checkpoint" in a.log()
    code, body = a.get("/health")
    assert code == 200, body

    # It fetches from every partition after the takeover, its own ones included, whose
    # records may all have been processed before the rebalance: one more event each.
    env.produce(watermark_pushers(PARTITIONS, T0 + N_EVENTS * 0.25 + 7200, tag="after"))
    produced = {
        (r.partition, r.offset): orjson.loads(r.value)["event_id"]
        for r in env.read("input", until=N_EVENTS + 2 * PARTITIONS)
    }
    after = {eid for eid in produced.values() if eid.startswith("after-")}
    assert len(after) == PARTITIONS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.clear()
        for rec in env.read("audit", idle_s=1.0):
            body = orjson.loads(rec.value)
            for off in body["offsets"]:
                seen[produced[(body["partition"], off)]] += 1
        if after <= set(seen):
            break
        time.sleep(1)
    assert after <= set(seen), f"not processed after the takeover: {sorted(after - set(seen))}"
