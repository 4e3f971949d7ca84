"""The webhook sink against a real HTTP receiver on loopback (http.server in a thread)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from streams.contract.reference import DeadLetter
from streams.core.alerts import Alert
from streams.core.config import WebhookConfig
from streams.engine.engine import Output
from streams.engine.webhook_metrics import WebhookMetrics
from streams.runtime.webhook import WebhookSink
from tests.plugins.webhook_receiver import Reply

SECRET = "test-webhook-secret"


def alert(n: int = 0, severity: str = "high", category: str = "key_leak") -> Alert:
    return Alert(
        alert_id=f"alert-{n:04d}",
        account_id=f"acct-{n}",
        ts="2026-01-01T00:05:00Z",
        severity=severity,  # type: ignore[arg-type]
        score=0.9,
        category=category,
        detectors=[],
        reasons=[],
        window={"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z"},
        model_version="test",
    )


def config(url: str, **kw: object) -> WebhookConfig:
    base = WebhookConfig(
        url=url,
        secret=SECRET,
        timeout_s=2.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        close_timeout_s=10.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Harness:
    def __init__(self, cfg: WebhookConfig) -> None:
        self.registry = CollectorRegistry()
        self.dead: list[DeadLetter] = []
        self.sink = WebhookSink(cfg, WebhookMetrics(self.registry), self.dead.append)

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


def test_signature_verifies_over_the_exact_body(receiver_factory) -> None:
    rx = receiver_factory()
    h = Harness(config(rx.url))
    a = alert(1)
    h.sink.write(Output(alerts=[a]))
    h.sink.close()
    assert len(rx.seen) == 1
    got = rx.seen[0]
    assert got.body == a.to_json()
    ts = got.headers["X-Vigil-Timestamp"]
    assert abs(int(ts) - time.time()) < 10
    # What a receiver computes, independently of the sink's code.
    want = hmac.new(SECRET.encode(), ts.encode() + b"." + got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["X-Vigil-Signature"], "v1=" + want)
    forged = hmac.new(b"another-secret", ts.encode() + b"." + got.body, hashlib.sha256)
    assert got.headers["X-Vigil-Signature"] != "v1=" + forged.hexdigest()
    assert got.headers["Idempotency-Key"] == "alert-0001"
    assert got.headers["Content-Type"] == "application/json"
    assert h.metric("vigil_webhook_sent_total") == 1
    assert h.metric("vigil_webhook_delivery_seconds_count") == 1
    assert h.dead == []


def test_503_is_retried_until_accepted(receiver_factory) -> None:
    rx = receiver_factory([Reply(503), Reply(503)])
    h = Harness(config(rx.url))
    h.sink.write(Output(alerts=[alert(2)]))
    h.sink.close()
    assert [s.headers["X-Vigil-Delivery-Attempt"] for s in rx.seen] == ["1", "2", "3"]
    assert {s.headers["Idempotency-Key"] for s in rx.seen} == {"alert-0002"}
    assert h.metric("vigil_webhook_retries_total") == 2
    assert h.metric("vigil_webhook_failures_total", reason="status_5xx") == 2
    assert h.metric("vigil_webhook_sent_total") == 1
    assert h.dead == []


def test_retry_after_is_honoured(receiver_factory) -> None:
    rx = receiver_factory([Reply(429, {"Retry-After": "1"})])
    h = Harness(config(rx.url))
    h.sink.write(Output(alerts=[alert(3)]))
    h.sink.close()
    assert len(rx.seen) == 2
    # The backoff alone would wait at most 0.05 s.
    assert rx.seen[1].at - rx.seen[0].at >= 0.95
    assert h.metric("vigil_webhook_failures_total", reason="status_429") == 1
    assert h.metric("vigil_webhook_sent_total") == 1


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_a_final_status_is_not_retried_and_is_dead_lettered(receiver_factory, status) -> None:
    rx = receiver_factory([Reply(status, body=b"unknown alert schema")])
    h = Harness(config(rx.url))
    a = alert(4)
    h.sink.write(Output(alerts=[a]))
    h.sink.close()
    assert len(rx.seen) == 1
    assert len(h.dead) == 1
    dl = h.dead[0]
    assert (dl.raw, dl.reason) == (a.to_json(), "webhook_rejected")
    assert f"HTTP {status}" in dl.detail and "unknown alert schema" in dl.detail
    assert "alert-0004" in dl.detail
    assert h.metric("vigil_webhook_dead_lettered_total", reason="webhook_rejected") == 1
    assert h.metric("vigil_webhook_retries_total") == 0


@pytest.mark.parametrize("status", [408, 500, 502])
def test_retried_statuses_exhaust_into_dead_letters(receiver_factory, status) -> None:
    rx = receiver_factory(default=Reply(status))
    h = Harness(config(rx.url, max_retries=2))
    h.sink.write(Output(alerts=[alert(5)]))
    h.sink.close()
    assert len(rx.seen) == 3
    assert [d.reason for d in h.dead] == ["webhook_retries_exhausted"]
    assert f"HTTP {status}" in h.dead[0].detail and "attempt 3" in h.dead[0].detail
    assert h.metric("vigil_webhook_retries_total") == 2


def test_receiver_down_dead_letters_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = Harness(config(f"http://127.0.0.1:{port}/", max_retries=2))
    a = alert(6)
    h.sink.write(Output(alerts=[a]))
    h.sink.close()
    assert [(d.raw, d.reason) for d in h.dead] == [(a.to_json(), "webhook_retries_exhausted")]
    assert "ConnectionRefusedError" in h.dead[0].detail
    assert h.metric("vigil_webhook_failures_total", reason="connection") == 3
    assert h.metric("vigil_webhook_dead_lettered_total", reason="webhook_retries_exhausted") == 1
    assert h.metric("vigil_webhook_sent_total") == 0


def test_a_receiver_slower_than_the_timeout_is_retried_then_dead_lettered(receiver_factory):
    rx = receiver_factory(default=Reply(200, delay_s=1.0))
    h = Harness(config(rx.url, timeout_s=0.2, max_retries=1))
    h.sink.write(Output(alerts=[alert(7)]))
    h.sink.close()
    assert len(rx.seen) == 2
    assert [d.reason for d in h.dead] == ["webhook_retries_exhausted"]
    assert "timeout" in h.dead[0].detail
    assert h.metric("vigil_webhook_failures_total", reason="timeout") == 2


def test_a_slow_receiver_does_not_block_and_loses_nothing(receiver_factory) -> None:
    rx = receiver_factory(default=Reply(200, delay_s=0.3))
    h = Harness(config(rx.url, queue_size=3, close_timeout_s=0.5))
    alerts = [alert(n) for n in range(20)]
    t0 = time.perf_counter()
    h.sink.write(Output(alerts=alerts))
    took = time.perf_counter() - t0
    assert took < 0.1, f"write blocked for {took:.2f} s"
    full = [d for d in h.dead if d.reason == "webhook_queue_full"]
    assert len(full) >= 20 - 3 - 1  # three queued, at most one already taken by the thread
    h.sink.close()
    delivered = {s.headers["Idempotency-Key"] for s in rx.seen}
    dead = {d.detail.split(":")[0].removeprefix("alert ") for d in h.dead}
    reasons = {d.reason for d in h.dead}
    # Every alert either reached the receiver or is a dead letter with its reason.
    assert delivered | dead == {a.alert_id for a in alerts}
    assert reasons <= {"webhook_queue_full", "webhook_shutdown"}
    assert h.metric("vigil_webhook_queue_depth") == 0


def test_filters_by_severity_and_category(receiver_factory) -> None:
    rx = receiver_factory()
    h = Harness(config(rx.url, min_severity="high", categories=("key_leak", "distillation")))
    cases = [
        alert(1, "low", "key_leak"),
        alert(2, "medium", "key_leak"),
        alert(3, "high", "key_leak"),
        alert(4, "critical", "distillation"),
        alert(5, "critical", "spam_campaign"),
    ]
    h.sink.write(Output(alerts=cases))
    h.sink.close()
    assert sorted(s.headers["Idempotency-Key"] for s in rx.seen) == ["alert-0003", "alert-0004"]
    assert h.dead == []


def test_write_after_close_is_dead_lettered_not_dropped(receiver_factory) -> None:
    rx = receiver_factory()
    h = Harness(config(rx.url))
    h.sink.close()
    h.sink.write(Output(alerts=[alert(9)]))
    assert [d.reason for d in h.dead] == ["webhook_shutdown"]
    assert rx.seen == []


def test_a_long_answer_is_cut_off_and_the_next_alert_still_goes(receiver_factory) -> None:
    rx = receiver_factory([Reply(200, body=b"x" * 300_000)])
    h = Harness(config(rx.url))
    h.sink.write(Output(alerts=[alert(1), alert(2)]))
    h.sink.close()
    assert [s.headers["Idempotency-Key"] for s in rx.seen] == ["alert-0001", "alert-0002"]
    assert h.metric("vigil_webhook_sent_total") == 2
    assert h.dead == []
