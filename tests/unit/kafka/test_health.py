"""The worker's /health states (streams/kafka/health.py)."""

from __future__ import annotations

from streams.kafka.health import HealthInputs, evaluate


def _h(**kw) -> HealthInputs:
    base = dict(
        now=1000.0,
        in_recovery=False,
        recovery_since=None,
        last_progress=999.0,
        lag=0,
        owned_partitions=4,
        started=True,
    )
    return HealthInputs(**{**base, **kw})


def test_health_states():
    assert evaluate(_h(), 120, 60)[0] == 200
    body = evaluate(_h(consumed=10, processed=7), 120, 60)[1]
    assert (body["events_consumed"], body["events_processed"]) == (10, 7)
    assert evaluate(_h(started=False), 120, 60)[0] == 503
    code, body = evaluate(_h(in_recovery=True, recovery_since=950.0), 120, 60)
    assert (code, body["status"]) == (200, "recovering")
    code, body = evaluate(_h(in_recovery=True, recovery_since=800.0), 120, 60)
    assert (code, body["status"]) == (503, "recovery_stuck")
    assert "200s" in body["reason"]
    # Idle with nothing to read is healthy; idle with a backlog is a stall.
    assert evaluate(_h(last_progress=500.0, lag=0), 120, 60)[0] == 200
    code, body = evaluate(_h(last_progress=500.0, lag=12), 120, 60)
    assert (code, body["status"]) == (503, "stalled")
