"""Window features against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from streams.core.batch import FeatureBatch
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from tests.events_util import T0, line

W = 300


def _windows(lines: list[bytes]) -> list[FeatureBatch]:
    seen: list[FeatureBatch] = []
    eng = Engine(VigilConfig(), detectors={}, clock=lambda: T0 + 86_400, on_features=seen.append)
    eng.process_lines(lines)
    eng.flush()
    return seen


def _row(batches: list[FeatureBatch], window: int, account: str) -> dict[str, float]:
    b = next(b for b in batches if b.window_start[0] == T0 + window * W)
    i = b.account_ids.tolist().index(account)
    return dict(zip(b.columns, b.X[i].tolist(), strict=True))


def test_volume_rates_and_distincts() -> None:
    lines = [
        line(ts=T0 + 1, prompt_tokens=100, completion_tokens=300, ip="10.0.0.1", prompt_hash="p1"),
        line(ts=T0 + 2, prompt_tokens=100, completion_tokens=100, ip="10.0.0.2", status=401,
             prompt_hash="p1"),
        line(ts=T0 + 3, prompt_tokens=0, completion_tokens=0, ip="10.0.1.9", status=429,
             finish_reason="content_filter", flagged=True, moderation={"hate": 0.9},
             country="FR", prompt_hash="p2", model="gpt-large"),
        line(ts=T0 + 4, status=500, user_agent="curl/8", prompt_hash=""),
        line(ts=T0 + 5, account_id="other"),
    ]  # fmt: skip
    r = _row(_windows(lines), 0, "acct_a")
    assert r["requests"] == 4
    assert r["prompt_tokens"] == 300 and r["completion_tokens"] == 450 and r["tokens"] == 750
    assert r["completion_ratio"] == pytest.approx(1.5)
    assert r["auth_fail_rate"] == 0.25 and r["rate_limited_rate"] == 0.25
    assert r["error_rate"] == 0.25  # the 500; 401 and 429 have their own rates
    assert r["content_filter_rate"] == 0.25 and r["flagged_rate"] == 0.25
    assert r["moderation_mean"] == pytest.approx(0.9 / 4)
    assert r["distinct_ips"] == 4 and r["distinct_subnets"] == 3
    assert r["distinct_countries"] == 2 and r["distinct_user_agents"] == 2
    assert r["distinct_models"] == 2
    # Three events carry a hash, two distinct: one in three is a repeat.
    assert r["prompt_repeat_rate"] == pytest.approx(1 / 3)
    p = np.array([3, 1]) / 4
    assert r["model_entropy"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert r["cost_usd"] == pytest.approx((400 * 0.0005 + 200 * 0.0005 + 0 + 150 * 0.0005) / 1000)


def test_new_values_are_counted_against_history_only() -> None:
    lines = [line(ts=T0 + 10, ip="1.1.1.1", country="DE")]
    lines += [line(ts=T0 + W + 10, ip="1.1.1.1", country="DE"),
              line(ts=T0 + W + 11, ip="2.2.2.2", country="US"),
              line(ts=T0 + W + 12, ip="2.2.2.3", country="US")]  # fmt: skip
    wins = _windows(lines)
    first, second = _row(wins, 0, "acct_a"), _row(wins, 1, "acct_a")
    assert first["new_ips"] == 0  # nothing to be new against yet
    assert second["new_ips"] == 2 and second["new_countries"] == 1
    assert second["new_subnets"] == 1 and second["history_windows"] == 1


def test_interarrival_regularity() -> None:
    regular = [line(ts=T0 + 10 * k) for k in range(12)]
    rng = np.random.default_rng(0)
    bursty = [
        line(ts=T0 + float(t), account_id="b") for t in np.sort(rng.exponential(25, 12).cumsum())
    ]
    wins = _windows(regular + bursty)
    assert _row(wins, 0, "acct_a")["interarrival_cv"] == pytest.approx(0.0, abs=1e-6)
    assert _row(wins, 0, "b")["interarrival_cv"] > 0.4


def test_campaign_signals_count_accounts() -> None:
    lines = []
    for k in range(5):  # five new accounts on one /24 with one client and one prompt
        lines.append(line(ts=T0 + k, account_id=f"new{k}", ip=f"198.51.100.{k + 1}",
                          user_agent="spam-bot/1", prompt_hash="same",
                          account_created="2026-09-30T23:00:00Z"))  # fmt: skip
        lines.append(line(ts=T0 + 50 + k, account_id=f"new{k}", ip=f"198.51.100.{k + 1}",
                          user_agent="spam-bot/1", prompt_hash="same",
                          account_created="2026-09-30T23:00:00Z"))  # fmt: skip
    for k in range(4):  # one IP failing auth on four accounts
        lines.append(line(ts=T0 + 100 + k, account_id=f"victim{k}", ip="192.0.2.66", status=401))
    wins = _windows(lines)
    new0 = _row(wins, 0, "new0")
    assert new0["subnet_new_accounts"] == 5 and new0["ua_new_accounts"] == 5
    assert new0["prompt_shared_accounts"] == 5
    assert _row(wins, 0, "victim0")["ip_auth_fail_accounts"] == 4
    b = next(b for b in wins if "new0" in b.account_ids.tolist())
    ev = b.context["campaign"][b.account_ids.tolist().index("new0")]
    assert ev is not None and set(ev["accounts"]) == {f"new{k}" for k in range(5)}


def test_account_age_and_plan() -> None:
    wins = _windows([line(ts=T0 + 5, plan="free", account_created="2026-09-21T00:00:00Z")])
    r = _row(wins, 0, "acct_a")
    assert r["account_age_days"] == pytest.approx(10 + W / 86_400)
    assert r["is_free_plan"] == 1
