"""Per-account state survives a worker's death: a window half-filled on one worker is
completed on the other.

Account X uses 150k tokens on the free plan in one window, processed by the worker that
owns X's partition, which then checkpoints and is killed with SIGKILL. X uses 100k more
in the same window. Only the sum crosses the 200k free-tier quota, so the survivor raises
the alert only if it restored the first half from the changelog.
"""

from __future__ import annotations

import time

import orjson

from streams.kafka.routing import partition_for
from tests.plugins.kafka import T0, event, watermark_pushers

ACCOUNT = "acct_state_free"


def _free(i: int) -> bytes:
    return event(ACCOUNT, T0 + 10 * (i + 1), f"st-{i}", plan="free", prompt_tokens=50_000)


def test_open_window_moves_to_the_survivor(kafka_env):
    env = kafka_env
    env.write_config(partitions=4)
    env.create_topics()
    a = env.start_worker("a")
    b = env.start_worker("b")
    # Let the group settle (b's join rebalances a) so the owner found below keeps X.
    deadline = time.monotonic() + 60
    while a.metric_sum("vigil_rebalances_total") < 2:
        assert time.monotonic() < deadline, "b never joined the group"
        time.sleep(0.3)
    time.sleep(2)

    env.produce([_free(i) for i in range(3)])
    deadline = time.monotonic() + 60
    while True:
        owner = next((w for w in (a, b) if w.metric_sum("vigil_events_consumed_total") >= 3), None)
        if owner is not None:
            break
        assert time.monotonic() < deadline, "first half never consumed"
        time.sleep(0.3)
    survivor = b if owner is a else a
    # A checkpoint commits the input offsets only after its state's changelog records are
    # flushed, so a committed offset past the first half means the survivor can resume
    # from that checkpoint. (Killing as soon as the state size metric showed, which is set
    # before that flush, once left the survivor re-reading the input instead.)
    part = partition_for(ACCOUNT.encode(), 4)
    while env.committed("input", part) < 3:
        assert time.monotonic() < deadline + 30, "no checkpoint after the first half"
        time.sleep(0.3)
    owner.kill9()

    env.produce([_free(i) for i in range(3, 5)])
    env.produce(watermark_pushers(4, T0 + 3600, tag="st-end"))
    deadline = time.monotonic() + 90
    mine: list[dict] = []
    while time.monotonic() < deadline and not mine:
        alerts = [orjson.loads(r.value) for r in env.read("alerts", idle_s=2.0)]
        mine = [x for x in alerts if x["account_id"] == ACCOUNT]
    assert mine, survivor.log()[-3000:]
    assert mine[0]["category"] == "free_tier_farming"
    assert mine[0]["window"]["start"].startswith("2026-10-01T00:00")
    tokens = [r for r in mine[0]["reasons"] if r["feature"] == "tokens"]
    assert tokens and tokens[0]["value"] >= 250_000  # both halves, not just the second
    assert "resumed from checkpoint" in survivor.log()
