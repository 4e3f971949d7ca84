"""`vigil replay` with a `[webhook]`: every alert reaches the receiver or the dead-letter file
with its reason; a webhook that cannot sign or keep its failures stops the run in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.plugins.webhook_receiver import Reply

VIGIL = [sys.executable, "-m", "streams"]


def _config(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "vigil.toml"
    p.write_text(
        f'[webhook]\nurl = "{url}"\nsecret_env = "TEST_HOOK_SECRET"\n'
        "backoff_base_s = 0.01\nbackoff_cap_s = 0.05\n"
    )
    return p


def _replay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VIGIL, "replay", *args, "--without-classifier"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        env={**os.environ, **env},
    )


def test_replay_delivers_every_alert_or_dead_letters_it(
    tmp_path: Path, small_corpus, receiver_factory
) -> None:
    events, _ = small_corpus
    # The first alert: 503 (retried), then 400 (final: dead-lettered); the rest accepted.
    rx = receiver_factory([Reply(503), Reply(400, body=b"no such account")])
    alerts, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    r = _replay(
        str(events),
        "--config", str(_config(tmp_path, rx.url)),
        "--alerts", str(alerts),
        "--dead-letters", str(dead),
        env={"TEST_HOOK_SECRET": "replay-secret-1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    emitted = [orjson.loads(line)["alert_id"] for line in alerts.read_bytes().splitlines()]
    assert len(emitted) >= 5
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    hooked = [d for d in letters if d["reason"].startswith("webhook_")]
    assert [d["reason"] for d in hooked] == ["webhook_rejected"]
    assert "HTTP 400: no such account" in hooked[0]["detail"]
    rejected = orjson.loads(hooked[0]["raw"])["alert_id"]
    delivered = [s.headers["Idempotency-Key"] for s in rx.seen]
    # Two attempts of the rejected alert, then each other alert once, in order.
    assert delivered[:2] == [rejected, rejected]
    assert delivered[2:] == [a for a in emitted if a != rejected]
    out = r.stdout.decode()
    assert f"webhook: {len(emitted) - 1} alerts delivered, 1 dead-lettered" in out


def test_a_webhook_without_its_secret_or_dead_letters_stops_in_one_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9/hook")
    cases = [
        ((), {}, "environment variable TEST_HOOK_SECRET is not set"),
        ((), {"TEST_HOOK_SECRET": "x-secret"}, "give --dead-letters"),
    ]
    for extra, env, words in cases:
        r = _replay("-", "--config", str(cfg), *extra, env=env)
        err = r.stderr.decode()
        lines = [x for x in err.splitlines() if x.strip()]
        assert r.returncode == 2 and len(lines) == 1, err
        assert lines[0].startswith("error:") and words in lines[0], err
        assert "x-secret" not in err
    # The worker checks the same before it connects to anything.
    r = subprocess.run(
        [*VIGIL, "worker", "--config", str(cfg), "--without-classifier"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    err = r.stderr.decode()
    assert r.returncode == 2 and err.startswith("error: webhook.secret_env:"), err
    assert len([x for x in err.splitlines() if x.strip()]) == 1, err
