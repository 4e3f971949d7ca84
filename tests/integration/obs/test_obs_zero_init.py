"""Labelled counters with a known set of label values export every series at 0 from
start-up, in both runners, so panels show 0 rather than "no data" and `rate()` rules can
tell "none happened" from "not exported". Scraped from the real processes' /metrics before
any input reaches them; the console and the store sink are checked the same way.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.contract.reference import REJECT_REASONS
from streams.core.alerts import CATEGORIES, SEVERITIES
from streams.engine.metric_labels import NO_DETECTOR, SUPPRESSION_CAUSES
from streams.engine.metrics import Metrics
from streams.engine.webhook_metrics import WEBHOOK_DEAD_REASONS, WEBHOOK_FAILURES
from tests.plugins.kafka import KafkaEnv
from tests.plugins.prometheus import free_port

VIGIL = str(Path(sys.executable).with_name("vigil"))
DETECTORS = ("rules", "baseline", "population", "campaign", "classifier")
Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def wait_scrape(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> Samples:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            return scrape(port)
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"no /metrics on port {port} after {timeout_s} s:\n{log.read_text()[-2000:]}")


def expected_engine_series() -> list[tuple[str, dict[str, str]]]:
    out = [("vigil_events_rejected_total", {"reason": r}) for r in REJECT_REASONS]
    out += [("vigil_alerts_suppressed_total", {"cause": c}) for c in SUPPRESSION_CAUSES]
    out += [
        ("vigil_alerts_total", {"severity": s, "category": c, "detector": d})
        for s in SEVERITIES
        for c in CATEGORIES
        for d in (*DETECTORS, NO_DETECTOR)
    ]
    out += [("vigil_detector_score_count", {"detector": d}) for d in DETECTORS]
    out += [("vigil_alert_latency_seconds_count", {})]
    out += [("vigil_webhook_failures_total", {"reason": r}) for r in WEBHOOK_FAILURES]
    out += [("vigil_webhook_dead_lettered_total", {"reason": r}) for r in WEBHOOK_DEAD_REASONS]
    out += [("vigil_webhook_sent_total", {}), ("vigil_webhook_queue_depth", {})]
    return out


def assert_engine_series_at_zero(samples: Samples, runner: str) -> None:
    missing = [
        (name, labels)
        for name, labels in expected_engine_series()
        if samples.get((name, frozenset(labels.items()))) != 0.0
    ]
    assert not missing, f"{runner}: {len(missing)} series not at 0, e.g. {missing[:3]}"
    versions = [dict(k[1]) for k in samples if k[0] == "vigil_config_info"]
    assert len(versions) == 1 and versions[0]["config_version"].startswith("cfg-"), versions


def test_counters_exist_before_any_engine() -> None:
    """A worker serves /metrics before its first partition (and engine): the counters'
    series are there already."""
    from prometheus_client import generate_latest

    text = generate_latest(Metrics().registry).decode()
    for reason in REJECT_REASONS:
        assert f'vigil_events_rejected_total{{reason="{reason}"}} 0.0' in text
    assert text.count("vigil_alerts_total{") == len(SEVERITIES) * len(CATEGORIES) * 6


def test_replay_exports_every_known_series_at_zero(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "replay.log"
    # Reading stdin that stays open: the replay is up, nothing has been read yet.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [VIGIL, "replay", "-", "--metrics-port", str(port)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        samples = wait_scrape(port, proc, log)
        assert samples[("vigil_events_read_total", frozenset())] == 0.0
        assert_engine_series_at_zero(samples, "replay")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=60)


@pytest.fixture
def kafka_env_obs(kafka_bootstrap: str, tmp_path: Path) -> Iterator[KafkaEnv]:
    env = KafkaEnv(kafka_bootstrap, f"zero{uuid.uuid4().hex[:8]}", tmp_path)
    env.write_config(partitions=2)
    env.create_topics()
    try:
        yield env
    finally:
        env.close()


def test_worker_and_store_sink_export_every_known_series_at_zero(
    kafka_env_obs: KafkaEnv, tmp_path: Path
) -> None:
    worker = kafka_env_obs.start_worker("zero")
    samples = scrape(worker.port)
    assert samples[("vigil_events_consumed_total", frozenset())] == 0.0
    assert_engine_series_at_zero(samples, "worker")

    port, log = free_port(), tmp_path / "sink.log"
    config = str(kafka_env_obs.config_path)
    store = f"sqlite:///{tmp_path / 'sink.db'}"
    cmd = [VIGIL, "store-sink", "--store", store, "--config", config, "--metrics-port", str(port)]
    with log.open("wb") as out:
        sink = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        got = wait_scrape(port, sink, log)
        for kind in ("bad_record", "batch_rejected"):
            assert got[("vigil_store_sink_errors_total", frozenset({("kind", kind)}))] == 0.0
        for kind in ("alerts", "snapshots"):
            topic = kafka_env_obs.topic(kind)
            assert got[("vigil_store_sink_records_total", frozenset({("topic", topic)}))] == 0.0
    finally:
        sink.terminate()
        sink.wait(timeout=30)


def test_console_exports_backlog_and_request_series_at_zero(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from console.app import create_app
    from console.backlog import AGE_GROUPS, AGE_OVER
    from console.backlog import SEVERITIES as BACKLOG_SEVERITIES
    from console.schema import VERDICTS
    from console.store import open_store

    client = TestClient(create_app(open_store(f"sqlite:///{tmp_path / 'console.db'}")))
    text = client.get("/metrics").text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    for sev in BACKLOG_SEVERITIES:
        for age in [name for name, _ in AGE_GROUPS] + [AGE_OVER]:
            key = ("vigil_backlog_open_alerts", frozenset({("alert_severity", sev), ("age", age)}))
            assert samples[key] == 0.0
    for verdict in VERDICTS:
        assert samples[("vigil_backlog_verdicts_total", frozenset({("verdict", verdict)}))] == 0.0
    five_xx = {
        dict(k[1])["route"]
        for k, v in samples.items()
        if k[0] == "vigil_console_requests_total" and dict(k[1])["status"] == "5xx" and v == 0
    }
    assert {"/alerts", "/api/alerts", "/alerts/{alert_id:path}/verdict"} <= five_xx
