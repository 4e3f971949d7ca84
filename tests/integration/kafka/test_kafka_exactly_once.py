"""`exactly_once` on the real broker: kill -9 and SIGTERM of workers mid-stream, events from
kcat's default partitioner (so most are forwarded through the repartition topic).

Outputs, state changelog, forwards and audit records of an input partition are written in
that partition's transaction together with its input offsets. A `read_committed` reader
must then see every event processed exactly once (the audit topic, read back to raw
events) and every alert once, although the killed worker had written, uncommitted, some
of both before it died.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import orjson
import pytest

from tests.integration.kafka.test_kafka_event_time import (
    PARITY,
    PER_ACCOUNT,
    PRODUCERS,
    _produce,
    _push_every_partition,
    make_corpus,
    parity,
)

PARTITIONS = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    # An hour of 1,000 accounts (about 45,000 events): long enough for two restarts
    # mid-stream, short enough to keep CI's time for the rest.
    return make_corpus(tmp_path_factory.mktemp("exactly-once"), accounts=1000, hours=1)


def _processed(env, committed_only: bool = True) -> Counter[bytes]:
    """Raw events the workers handed to their engines, as committed: each audit record
    names a batch by topic, partition and offsets."""
    values = {
        (env.topic(kind), r.partition, r.offset): r.value
        for kind in ("input", "repartition")
        for r in env.read(kind, idle_s=2.0, committed_only=committed_only)
    }
    seen: Counter[bytes] = Counter()
    for rec in env.read("audit", idle_s=2.0, committed_only=committed_only):
        body = orjson.loads(rec.value)
        for off in body["offsets"]:
            seen[values[(body["topic"], body["partition"], off)]] += 1
    return seen


def _wait_processed(env, n: int, stall_s: float, cap_s: float):
    """Reads the committed audit until `n` events are processed, or the count has not moved
    for `stall_s`, or `cap_s` passed; returns the last count and (seconds, count) pairs."""
    start = moved = time.monotonic()
    progress: list[tuple[int, int]] = []
    while True:
        seen = _processed(env)
        now = time.monotonic()
        total = sum(seen.values())
        if not progress or total != progress[-1][1]:
            moved = now
            progress.append((round(now - start), total))
        if total >= n or now - moved > stall_s or now - start > cap_s:
            return seen, progress
        time.sleep(3)


def _offsets(env) -> dict[int, tuple[int, int]]:
    """Per input partition: the group's committed offset and the partition's end. A
    committed offset at its end with events missing would be a loss, not a stall."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=env.bootstrap, group_id=None)
    try:
        tps = [TopicPartition(env.topic("input"), p) for p in range(PARTITIONS)]
        ends = c.end_offsets(tps)
    finally:
        c.close()
    return {tp.partition: (env.committed("input", tp.partition), ends[tp]) for tp in tps}


def _warnings(worker) -> str:
    lines = [x for x in worker.log().splitlines() if "WARN" in x or "ERROR" in x]
    return f"{worker.log_path.name}: " + "\n".join(lines[-15:])


def _wait(cond, timeout_s: float, what: str, workers) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        alive = all(w.alive() for w in workers)
        assert alive and time.monotonic() < deadline, (
            what + "\n" + "\n".join(w.log()[-2000:] for w in workers)
        )
        time.sleep(0.5)


def test_read_committed_sees_each_event_and_alert_once(kafka_env, corpus, capsys):
    env = kafka_env
    env.write_config(partitions=PARTITIONS, guarantee="exactly_once")
    env.create_topics(audit=True)
    a = env.start_worker("a", audit=True)
    b = env.start_worker("b", audit=True)
    lines: list[bytes] = corpus["lines"]
    done = threading.Event()

    def produce() -> None:
        step = max(1, len(lines) // 40)
        for i in range(0, len(lines), step):
            _produce(env, lines[i : i + step], PRODUCERS["kcat-default"])
            time.sleep(0.5)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    consumed = lambda w: w.metric_sum("vigil_events_consumed_total")  # noqa: E731
    _wait(lambda: consumed(b) > len(lines) // 6, 240, "b never got going", [a, b])
    assert not done.is_set(), "the stream ended before the kill; make it longer"
    b.kill9()
    b = env.start_worker("b", audit=True)  # same data directory: its local state survived
    _wait(lambda: consumed(a) > len(lines) // 3, 240, "a stalled after the kill", [a, b])
    a.stop()  # SIGTERM: the final checkpoint commits a's open transactions
    a = env.start_worker("a", audit=True)
    t.join(timeout=600)
    assert done.is_set()
    _push_every_partition(env, corpus["last"] + 3 * 3600)

    want: Counter[bytes] = Counter(lines)
    # A slow machine may still be catching up (a restarted worker rebuilds its state from
    # the changelog first): wait while the count moves, and fail only once it stops.
    seen, progress = _wait_processed(env, len(lines), stall_s=180, cap_s=600)
    pushers = {v for v in seen if b"acct_end_" in v}
    for v in pushers:
        del seen[v]
    missing = want - seen
    twice = seen - want
    # The last windows close once the pushers' marks, committed with their partitions'
    # next checkpoints, reach every engine: wait until the committed alerts stop changing.
    alerts: list[dict] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(5)
        got = [orjson.loads(r.value) for r in env.read("alerts", idle_s=2.0, committed_only=True)]
        if alerts and len(got) == len(alerts):
            break
        alerts = got
    raw_alerts = env.read("alerts", idle_s=2.0)
    ids = Counter(x["alert_id"] for x in alerts)
    dup_alerts = sum(c - 1 for c in ids.values())
    uncommitted_dups = len(raw_alerts) - len(alerts)
    # What the killed worker had done and not committed: visible without read_committed.
    redone = sum((_processed(env, committed_only=False) - want).values()) - len(pushers)
    r = {x["account_id"] for x in corpus["alerts"] if x["category"] in PER_ACCOUNT}
    ra = {x["account_id"] for x in corpus["alerts"]}
    w = {x["account_id"] for x in alerts if x["category"] in PER_ACCOUNT}
    wa = {x["account_id"] for x in alerts if not x["account_id"].startswith("acct_end_")}
    precision, recall = parity(corpus["alerts"], alerts)
    with capsys.disabled():
        print(
            f"\nexactly_once, {PARTITIONS} partitions, kill -9 and SIGTERM: {len(lines)} events, "
            f"missing {sum(missing.values())}, processed twice {sum(twice.values())} "
            f"(read_committed); alerts {len(alerts)}, duplicate alerts {dup_alerts}; "
            f"alert records of aborted or open transactions {uncommitted_dups}; events in "
            f"aborted transactions {redone}; per-account "
            f"alerted accounts replay {len(r)}, worker {len(w)}, both {len(r & w)}; all "
            f"alerted accounts replay {len(ra)}, worker {len(wa)}, both {len(ra & wa)}; "
            f"(account, category) precision {precision:.3f}, macro recall {recall:.3f}"
        )
    assert not twice, f"{sum(twice.values())} events processed twice"
    assert dup_alerts == 0, ids.most_common(3)
    if missing:  # where they were: runs of offsets per topic and partition, for the report
        spans: dict[tuple[str, int], list[int]] = {}
        for kind in ("input", "repartition"):
            for rec in env.read(kind, idle_s=2.0):
                if rec.value in missing:
                    spans.setdefault((kind, rec.partition), []).append(rec.offset)
        where = {k: (len(v), min(v), max(v)) for k, v in sorted(spans.items())}
        raise AssertionError(
            f"{sum(missing.values())} events never processed: (topic, partition): (count, "
            f"first, last) {where}; processed count over time {progress[-8:]}; group offsets "
            f"vs ends {_offsets(env)}; workers alive {a.alive()}, {b.alive()}\n"
            + "\n".join(_warnings(w) for w in (a, b))
        )
    assert alerts, "the corpus must raise alerts"
    # As in test_kafka_event_time: through kills and restarts, with the campaign exchange,
    # replay's accounts under replay's categories.
    assert r <= w, sorted(r - w)
    assert precision >= 1 - PARITY and recall >= 1 - PARITY, (precision, recall)
