"""Every dashboard panel and every alert rule, evaluated against metrics a real Prometheus
scraped from a running `vigil replay` (plus the Kafka worker's own metrics).

The replay runs on generated data with misuse, malformed lines and duplicates in it, so
the alert, dead-letter and detector series all carry real values. Metrics that only a
Kafka worker has (consumer lag, rebalances, recovery, records consumed) come from a
process serving the worker's metrics module, scraped as job `vigil-worker`.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.prometheus import (
    PrometheusServer,
    free_port,
    start_prometheus,
    stop_prometheus,
)

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO / "dashboards" / "json").glob("*.json"))
RULE_FILES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
VIGIL = [sys.executable, "-m", "streams.cli"]
# Only a Kafka worker exports these; replay has no consumer group.
WORKER_ONLY = ("vigil_consumer_lag", "vigil_rebalances_total", "vigil_recovery_in_progress",
               "vigil_events_consumed_total")  # fmt: skip
SELECTOR = re.compile(r"\b(vigil_[a-z0-9_]+|up)\b(\{[^}]*\})?")
# What Grafana puts in for the variables: "All" is `.+`; the rate window spans the run.
GRAFANA_VALUES = {"$__rate_interval": "5m", "$job": ".+", "$instance": ".+", "$detector": ".+"}


def panel_targets() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        text_vars = {
            f"${v['name']}": v["query"]
            for v in board["templating"]["list"]
            if v["type"] == "textbox"
        }
        for panel in board["panels"]:
            for tgt in panel.get("targets", []):
                expr = substitute(tgt["expr"], {**GRAFANA_VALUES, **text_vars})
                out.append((f"{board['uid']}/{panel['title']}/{tgt['refId']}", expr))
    return out


def variable_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
                assert inner, var["query"]
                expr = substitute(inner.group(1), GRAFANA_VALUES)
                out.append((f"{board['uid']}/${var['name']}", expr))
    return out


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    # Longest names first so `$instance` is not eaten by a shorter variable's name.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name[1:] + "}", values[name]).replace(name, values[name])
    assert "$" not in expr, f"unresolved variable in {expr}"
    return expr


def worker_only(expr: str) -> bool:
    return any(name in expr for name in WORKER_ONLY)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def serve_worker_metrics(port: int, stop: threading.Event) -> None:
    """The worker-only metrics, moving like a live consumer's, on their own endpoint."""
    from streams.kafka.metrics import WorkerMetrics

    worker = WorkerMetrics(CollectorRegistry())
    start_http_server(port, addr="127.0.0.1", registry=worker.registry)
    worker.rebalances.inc()
    worker.recovery_in_progress.set(0)

    def run() -> None:
        lag = 0
        while not stop.wait(0.2):
            worker.events_consumed.inc(50)
            lag = (lag + 7) % 300
            for partition in range(3):
                worker.consumer_lag.labels("api-usage", str(partition)).set(lag + partition)

    threading.Thread(target=run, daemon=True).start()


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("generated")
    cmd = [*VIGIL, "generate", "--accounts", "300", "--hours", "6", "--seed", "3", "--out"]
    subprocess.run([*cmd, str(out)], check=True, cwd=REPO, timeout=300)
    path = out / "events.jsonl.gz"
    with gzip.open(path, "rb") as fh:
        lines = sum(1 for _ in fh)
    return path, lines


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, events_file) -> Iterator[PrometheusServer]:
    path, lines = events_file
    work = tmp_path_factory.mktemp("scrape")
    replay_port, worker_port = free_port(), free_port()
    stop = threading.Event()
    serve_worker_metrics(worker_port, stop)
    server = start_prometheus(
        work / "prometheus",
        {
            "vigil-replay": [f"127.0.0.1:{replay_port}"],
            "vigil-worker": [f"127.0.0.1:{worker_port}"],
        },
        RULE_FILES,
    )
    log = (work / "replay.log").open("wb")
    replay = subprocess.Popen(
        [*VIGIL, "replay", str(path), "--alerts", str(work / "alerts.jsonl"),
         "--dead-letters", str(work / "dead-letters.jsonl"),
         "--metrics-port", str(replay_port), "--hold"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_replay(replay, replay_port, lines, work / "replay.log")
        # The final values must be scraped and the rules evaluated on them.
        server.wait_for(f'vigil_events_read_total{{job="vigil-replay"}} >= {lines}', 30)
        server.wait_scrapes(3)
        yield server
    finally:
        stop.set()
        replay.terminate()
        try:
            replay.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replay.kill()
        log.close()
        stop_prometheus(server)


def wait_for_replay(proc: subprocess.Popen, port: int, lines: int, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"replay exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if scrape(port).get("vigil_events_read_total", 0) >= lines:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"replay did not read {lines} lines in 300 s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(("where", "expr"), panel_targets(), ids=[w for w, _ in panel_targets()])
def test_panel_query_returns_series(prom: PrometheusServer, where: str, expr: str) -> None:
    result = prom.query(expr)
    assert result, f"{where}: no series for {expr}"


@pytest.mark.parametrize(
    ("where", "expr"), variable_queries(), ids=[w for w, _ in variable_queries()]
)
def test_variable_query_returns_series(prom: PrometheusServer, where: str, expr: str) -> None:
    assert prom.query(expr), f"{where}: no series for {expr}"


def test_engine_panels_are_backed_by_the_replay(prom: PrometheusServer) -> None:
    """Every panel query not about Kafka gets its data from the real replay alone."""
    empty = []
    for where, expr in panel_targets():
        if worker_only(expr) or "up{" in expr:
            continue
        only_replay = expr.replace('job=~".+"', 'job="vigil-replay"')
        if not prom.query(only_replay):
            empty.append(where)
    assert not empty, f"no replay data for {empty}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rule_evaluates_on_scraped_data(prom: PrometheusServer, rule: dict) -> None:
    name = rule.get("alert") or rule["record"]
    prom.query(rule["expr"])  # raises when Prometheus cannot parse or run it
    for match in SELECTOR.finditer(rule["expr"]):
        assert prom.query(match.group(0)), f"{name}: {match.group(0)} has no series"
    loaded = {
        r["name"]: r
        for group in prom.api("rules")["groups"]
        for r in group["rules"]
    }  # fmt: skip
    assert name in loaded, f"{name} not loaded by Prometheus"
    assert loaded[name]["health"] == "ok", loaded[name].get("lastError")


def test_alerts_and_dead_letters_carry_real_labels(prom: PrometheusServer) -> None:
    alerts = prom.query(
        'sum by (severity, category, detector) (vigil_alerts_total{job="vigil-replay"})'
    )
    assert alerts and sum(float(s["value"][1]) for s in alerts) > 0
    assert {s["metric"]["severity"] for s in alerts} <= {"low", "medium", "high", "critical"}
    reasons = prom.query('sum by (reason) (vigil_events_rejected_total{job="vigil-replay"})')
    assert reasons and all(float(s["value"][1]) > 0 for s in reasons)
    detectors = prom.query('sum by (detector) (vigil_detector_score_count{job="vigil-replay"})')
    assert len(detectors) >= 2


def test_no_per_account_or_per_ip_labels(prom: PrometheusServer) -> None:
    match = {"match[]": '{__name__=~"vigil_.+"}'}
    labels = set(prom.api("labels", **match))
    assert not labels & {"account", "account_id", "ip", "api_key_id", "key", "user", "prompt_hash"}
    for label in labels - {"__name__", "job", "instance"}:
        values = prom.api(f"label/{label}/values", **match)
        assert len(values) <= 64, f"label {label} has {len(values)} values"
