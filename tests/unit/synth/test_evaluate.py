"""Account-level quality figures on hand-made alerts and labels."""

from __future__ import annotations

import pytest

from streams.core.alerts import Alert, rfc3339
from synth.evaluate import score_alerts
from tests.events_util import T0


def _alert(account: str, ts: float, category: str) -> Alert:
    return Alert(
        alert_id=f"{account}{ts}", account_id=account, ts=rfc3339(ts), severity="high",
        score=0.9, category=category, detectors=[], reasons=[],
        window={"start": rfc3339(ts - 300), "end": rfc3339(ts)}, model_version="t",
    )  # fmt: skip


def test_recall_precision_and_time_to_detect() -> None:
    accounts = {f"b{i}": {"label": "benign"} for i in range(998)}
    accounts["leak"] = {"label": "key_leak", "onset": T0 + 600}
    accounts["spam"] = {"label": "spam_campaign", "onset": T0 + 100}
    labels = {"start": T0, "end": T0 + 86_400, "accounts": accounts}
    alerts = [
        _alert("leak", T0 + 300, "key_leak"),  # before onset: not a detection
        _alert("leak", T0 + 900, "key_leak"),  # 5 min after onset
        _alert("b1", T0 + 900, "key_leak"),  # a benign account alerted
    ]
    q = score_alerts(alerts, labels)
    assert q.scenarios["key_leak"].recall == 1.0
    assert q.scenarios["key_leak"].ttd_s == [300.0]
    assert q.scenarios["spam_campaign"].recall == 0.0
    assert q.scenarios["key_leak"].precision == pytest.approx(0.5)
    assert q.precision == pytest.approx(0.5)
    assert q.benign_alerted == 1
    assert q.benign_per_1000_per_day == pytest.approx(1000 / 998)
    assert q.base_rate == pytest.approx(0.002)
