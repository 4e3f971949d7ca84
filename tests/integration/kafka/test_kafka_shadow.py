"""A worker runs a challenger beside the model: its alerts go to the shadow topic only.

The shadow here is the shipped model itself, so both must alert the same accounts and
windows; the alert topic must carry the champion's alerts once each, none from the shadow.
"""

from __future__ import annotations

import time

import orjson

from models.train import ARTIFACTS
from tests.plugins.kafka import event, watermark_pushers

T = 1_790_812_800.0  # 2026-10-01T00:00:00Z


def _burst(account: str, t: float) -> list[bytes]:
    """A free-plan account past its token quota in one window: the rules detector fires."""
    return [
        event(account, t + i, f"{account}-{t:.0f}-{i}", plan="free", prompt_tokens=80_000)
        for i in range(4)
    ]


def test_worker_shadow_alerts_go_to_their_own_topic(kafka_env) -> None:
    env = kafka_env
    env.write_config(partitions=2)
    env.create_topics()
    w = env.start_worker("a", extra_args=["--shadow-model", str(ARTIFACTS)])
    accounts = [f"acct_shadow_{i}" for i in range(6)]
    env.produce(
        [line for a in accounts for line in _burst(a, T + 10)] + watermark_pushers(2, T + 700)
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        alerts = [orjson.loads(r.value) for r in env.read("alerts", idle_s=1.0)]
        if {a["account_id"] for a in alerts} >= set(accounts):
            break
        time.sleep(0.5)
    shadow = [orjson.loads(r.value) for r in env.read("shadow", until=len(alerts), idle_s=3.0)]

    def keys(rows: list[dict]) -> list[tuple]:
        return sorted((a["account_id"], a["window"]["end"], a["category"]) for a in rows)

    assert {a["account_id"] for a in alerts} >= set(accounts)
    assert keys(shadow) == keys(alerts)  # the same model: the same alerts, on its own topic
    assert len(set(keys(alerts))) == len(alerts)  # nothing twice on the alert topic
    assert w.metric_sum('vigil_shadow_alerted_accounts_total{agreement="both"}') >= len(accounts)
    assert w.metric_sum('vigil_shadow_alerted_accounts_total{agreement="shadow_only"}') == 0
    assert w.metric_sum('vigil_shadow_alerted_accounts_total{agreement="champion_only"}') == 0
