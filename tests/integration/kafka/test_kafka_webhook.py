"""A worker on the real broker hands its alerts to a webhook: signed, retried after a 503,
and an alert the receiver refuses lands in the dead-letter topic with its reason."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time

import orjson

from tests.plugins.kafka import T0, event, watermark_pushers
from tests.plugins.webhook_receiver import Reply

SECRET = "worker-webhook-secret"
ACCOUNTS = ("acct_hook_a", "acct_hook_b")


def _header(record, name: str) -> str:
    return dict(record.headers or []).get(name, b"").decode()


def test_worker_alerts_reach_the_webhook_or_the_dead_letter_topic(kafka_env, receiver_factory):
    # First request 503 (retried, then accepted); every later one 400 (final).
    rx = receiver_factory([Reply(503), Reply(200)], default=Reply(400, body=b"closed ticket"))
    env = kafka_env
    env.write_config(
        partitions=2,
        extra=f'[webhook]\nurl = "{rx.url}"\nsecret_env = "HOOK_SECRET"\n'
        "backoff_base_s = 0.05\nbackoff_cap_s = 0.2\n",
    )
    env.create_topics()
    worker = env.start_worker("w1", env={"HOOK_SECRET": SECRET})

    # Each account passes the free plan's 200k token quota within one window: one alert each.
    burst = [
        event(acct, T0 + 10 * (i + 1), f"{acct}-{i}", plan="free", prompt_tokens=60_000)
        for acct in ACCOUNTS
        for i in range(4)
    ]
    env.produce(burst)
    env.produce(watermark_pushers(2, T0 + 3600, tag="hook-end"))

    alerts = [orjson.loads(r.value) for r in env.read("alerts", until=2, timeout_s=90)]
    emitted = {a["alert_id"] for a in alerts if a["account_id"] in ACCOUNTS}
    assert len(emitted) == 2, alerts
    dead = [
        r for r in env.read("dead", until=1, timeout_s=60) if _header(r, "vigil-sink") == "webhook"
    ]
    assert len(dead) == 1
    assert _header(dead[0], "vigil-reason") == "webhook_rejected"
    assert "HTTP 400: closed ticket" in _header(dead[0], "vigil-detail")
    assert _header(dead[0], "vigil-source-topic") == env.topic("alerts")
    refused = orjson.loads(dead[0].value)["alert_id"]

    keys = [s.headers["Idempotency-Key"] for s in rx.seen]
    accepted = (emitted - {refused}).pop()
    assert keys == [accepted, accepted, refused]
    for s in rx.seen:
        ts = s.headers["X-Vigil-Timestamp"]
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + s.body, hashlib.sha256)
        assert s.headers["X-Vigil-Signature"] == "v1=" + mac.hexdigest()
        assert orjson.loads(s.body)["alert_id"] == s.headers["Idempotency-Key"]

    deadline = time.monotonic() + 30
    while worker.metric_sum("vigil_webhook_sent_total") < 1:
        assert time.monotonic() < deadline, "vigil_webhook_sent_total never reached 1"
        time.sleep(0.3)
    m = worker.metrics()
    assert m["vigil_webhook_retries_total"] == 1
    assert m['vigil_webhook_failures_total{reason="status_5xx"}'] == 1
    assert m['vigil_webhook_dead_lettered_total{reason="webhook_rejected"}'] == 1
    assert m['vigil_webhook_dead_lettered_total{reason="webhook_queue_full"}'] == 0
    assert worker.alive()


def test_alerts_still_queued_at_sigterm_are_dead_lettered(kafka_env):
    with socket.socket() as s:  # nobody listens here: every attempt is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = kafka_env
    env.write_config(
        partitions=2,
        extra=f'[webhook]\nurl = "http://127.0.0.1:{port}/hook"\nsecret_env = "HOOK_SECRET"\n'
        "max_retries = 1000\nbackoff_base_s = 1.0\nclose_timeout_s = 1.0\n",
    )
    env.create_topics()
    worker = env.start_worker("w1", env={"HOOK_SECRET": SECRET})
    burst = [
        event(acct, T0 + 10 * (i + 1), f"{acct}-{i}", plan="free", prompt_tokens=60_000)
        for acct in ACCOUNTS
        for i in range(4)
    ]
    env.produce(burst)
    env.produce(watermark_pushers(2, T0 + 3600, tag="hook-stop"))
    alerts = [orjson.loads(r.value) for r in env.read("alerts", until=2, timeout_s=90)]
    emitted = {a["alert_id"] for a in alerts if a["account_id"] in ACCOUNTS}
    assert len(emitted) == 2, alerts
    deadline = time.monotonic() + 30
    while worker.metric_sum("vigil_webhook_failures_total") < 1:
        assert time.monotonic() < deadline, "the webhook never tried"
        time.sleep(0.3)

    worker.stop()  # SIGTERM: the queue gets close_timeout_s, then its alerts are dead letters
    assert worker.proc.returncode is not None
    dead = [
        r for r in env.read("dead", until=2, timeout_s=60) if _header(r, "vigil-sink") == "webhook"
    ]
    assert {_header(r, "vigil-reason") for r in dead} == {"webhook_shutdown"}
    assert {orjson.loads(r.value)["alert_id"] for r in dead} == emitted
    assert "ConnectionRefusedError" in " ".join(_header(r, "vigil-detail") for r in dead)
