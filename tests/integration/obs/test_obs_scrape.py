"""Every dashboard panel and every alert rule, evaluated against metrics a real Prometheus
scraped from a running `vigil replay` (plus the Kafka worker's own metrics).

The replay runs on generated data with misuse, malformed lines and duplicates in it, so
the alert, dead-letter and detector series all carry real values. The same events go
through a real `vigil worker` on a real Kafka broker, scraped as job `vigil-worker`, for the
metrics only a worker has (consumer lag, rebalances, recovery, records consumed).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.contract.reference import REJECT_REASONS
from tests.plugins.kafka import KafkaEnv, WorkerProc
from tests.plugins.prometheus import (
    PrometheusServer,
    free_port,
    start_prometheus,
    stop_prometheus,
)

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((REPO / "dashboards" / "json").glob("*.json"))
RULE_FILES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
# The installed console script; `python -m streams.cli.common` would register no commands.
VIGIL = [str(Path(sys.executable).with_name("vigil"))]
# Only a Kafka worker exports these; replay has no consumer group.
WORKER_ONLY = (
    "vigil_consumer_lag",
    "vigil_rebalances_total",
    "vigil_recovery_in_progress",
    "vigil_events_consumed_total",
    "vigil_events_repartitioned_total",
    "vigil_owned_partitions",
    "vigil_event_time_held_seconds",  # per-source event time: the worker's engines only
    "vigil_idle_sources",
    "vigil_late_sources",
    "vigil_unscored_windows",  # the worker's backlog and checkpoints
    "vigil_input_paused_partitions",
    "vigil_uncheckpointed_partitions",
)
# Exported by the console (backlog, requests) or the store sink, not by either runner.
SERVICE_ONLY = ("vigil_backlog_", "vigil_console_", "vigil_store_sink_")
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


def service_only(expr: str) -> bool:
    return any(name in expr for name in SERVICE_ONLY)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


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
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaEnv]:
    env = KafkaEnv(kafka_bootstrap, f"obs{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("kafka"))
    env.write_config(partitions=3)
    env.create_topics()
    env.start_worker("obs")
    try:
        yield env
    finally:
        env.close()


@pytest.fixture(scope="module")
def prom(
    tmp_path_factory: pytest.TempPathFactory, events_file, worker: KafkaEnv
) -> Iterator[PrometheusServer]:
    path, lines = events_file
    work = tmp_path_factory.mktemp("scrape")
    replay_port, console_port, sink_port = free_port(), free_port(), free_port()
    worker_port = worker.workers[0].port
    server = start_prometheus(
        work / "prometheus",
        {
            "vigil-replay": [f"127.0.0.1:{replay_port}"],
            "vigil-worker": [f"127.0.0.1:{worker_port}"],
            "vigil-console": [f"127.0.0.1:{console_port}"],
            "vigil-store-sink": [f"127.0.0.1:{sink_port}"],
        },
        RULE_FILES,
    )
    store = work / "vigil.db"
    # The console reads the store the replay fills; the sink copies the worker's alerts.
    services = [
        start_service(
            work / "console.log",
            "console",
            "--store",
            str(store),
            "--port",
            str(console_port),
        ),
        start_service(
            work / "sink.log",
            "store-sink",
            "--store",
            f"sqlite:///{work / 'sink.db'}",
            "--config",
            str(worker.config_path),
            "--metrics-port",
            str(sink_port),
        ),
    ]
    log = (work / "replay.log").open("wb")
    replay = subprocess.Popen(
        [
            *VIGIL,
            "replay",
            str(path),
            "--alerts",
            str(work / "alerts.jsonl"),
            "--dead-letters",
            str(work / "dead-letters.jsonl"),
            "--metrics-port",
            str(replay_port),
            "--store",
            str(store),
            "--hold",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with gzip.open(path, "rb") as fh:
            worker.produce([line.rstrip(b"\n") for line in fh])
        wait_for_replay(replay, replay_port, lines, work / "replay.log")
        wait_for_worker(worker.workers[0], lines)
        # The final values must be scraped and the rules evaluated on them.
        server.wait_for(f'vigil_events_read_total{{job="vigil-replay"}} >= {lines}', 30)
        server.wait_for(f'vigil_events_consumed_total{{job="vigil-worker"}} >= {lines}', 30)
        server.wait_for('vigil_backlog_open_alerts{job="vigil-console"}', 30)
        server.wait_for('sum(vigil_store_sink_records_total{job="vigil-store-sink"}) > 0', 120)
        server.wait_scrapes(3)
        yield server
    finally:
        for proc, out in services:
            proc.terminate()
            proc.wait(timeout=30)
            out.close()
        replay.terminate()
        try:
            replay.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replay.kill()
        log.close()
        stop_prometheus(server)


def start_service(log: Path, *args: str) -> tuple[subprocess.Popen, object]:
    out = log.open("wb")
    proc = subprocess.Popen([*VIGIL, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return proc, out


def wait_for_worker(proc: WorkerProc, lines: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not proc.alive():
            pytest.fail(f"worker exited:\n{proc.log()[-3000:]}")
        if proc.metric_sum("vigil_events_consumed_total") >= lines:
            return
        time.sleep(0.5)
    pytest.fail(f"worker did not consume {lines} records in 300 s:\n{proc.log()[-3000:]}")


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


@pytest.mark.parametrize("job", ["vigil-replay", "vigil-worker"])
def test_panels_work_for_each_runner_alone(prom: PrometheusServer, job: str) -> None:
    """Replay and worker each back every panel on their own; replay has no Kafka metrics."""
    empty = []
    for where, expr in panel_targets():
        if service_only(expr):
            continue  # the console's and the store sink's own panels
        if job == "vigil-replay" and (worker_only(expr) or "up{" in expr):
            continue
        if not prom.query(expr.replace('job=~".+"', f'job="{job}"')):
            empty.append(where)
    assert not empty, f"no {job} data for {empty}"


def metric_base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|created|total|info)$", "", name)


def documented_metrics(section: str = "") -> set[str]:
    doc = (REPO / "docs" / "metrics.md").read_text()
    if section:
        doc = doc.split(section, 1)[1].split("\n## ", 1)[0]
    return {metric_base(n) for n in re.findall(r"^\| `(vigil_[a-z0-9_]+)`", doc, re.M)}


def scraped_metrics(prom: PrometheusServer, job: str = "") -> set[str]:
    match = {"match[]": f'{{job="{job}"}}'} if job else {}
    names = prom.api("label/__name__/values", **match)
    return {metric_base(n) for n in names if n.startswith("vigil_")}


def test_every_scraped_metric_is_documented(prom: PrometheusServer) -> None:
    documented, scraped = documented_metrics(), scraped_metrics(prom)
    assert scraped - documented == set(), "scraped but not in docs/metrics.md"
    assert documented - scraped == set(), "documented but never scraped"


def test_replay_and_worker_export_the_same_engine_metrics(prom: PrometheusServer) -> None:
    replay, worker = scraped_metrics(prom, "vigil-replay"), scraped_metrics(prom, "vigil-worker")
    assert replay == documented_metrics("## Engine metrics")
    assert worker - replay == documented_metrics("## Kafka worker metrics")
    assert replay <= worker


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rule_evaluates_on_scraped_data(prom: PrometheusServer, rule: dict) -> None:
    name = rule.get("alert") or rule["record"]
    prom.query(rule["expr"])  # raises when Prometheus cannot parse or run it
    for match in SELECTOR.finditer(rule["expr"]):
        assert prom.query(match.group(0)), f"{name}: {match.group(0)} has no series"
    loaded = {r["name"]: r for group in prom.api("rules")["groups"] for r in group["rules"]}
    assert name in loaded, f"{name} not loaded by Prometheus"
    assert loaded[name]["health"] == "ok", loaded[name].get("lastError")


def test_alerts_and_dead_letters_carry_real_labels(prom: PrometheusServer) -> None:
    alerts = prom.query(
        'sum by (severity, category, detector) (vigil_alerts_total{job="vigil-replay"})'
    )
    assert alerts and sum(float(s["value"][1]) for s in alerts) > 0
    assert {s["metric"]["severity"] for s in alerts} <= {"low", "medium", "high", "critical"}
    reasons = prom.query('sum by (reason) (vigil_events_rejected_total{job="vigil-replay"})')
    # Every reason is exported from start-up; the generator's bad lines give some of them.
    assert {s["metric"]["reason"] for s in reasons} == set(REJECT_REASONS)
    assert sum(float(s["value"][1]) > 0 for s in reasons) >= 5
    detectors = prom.query('sum by (detector) (vigil_detector_score_count{job="vigil-replay"})')
    assert len(detectors) >= 2


def test_no_per_account_or_per_ip_labels(prom: PrometheusServer) -> None:
    """Across everything both runners export, Faust's own metrics included."""
    match = {"match[]": '{job=~"vigil-.+"}'}
    labels = set(prom.api("labels", **match))
    forbidden = {"account", "account_id", "ip", "api_key_id", "key", "user", "prompt_hash"}
    assert not labels & forbidden
    for label in labels - {"__name__", "job", "instance"}:
        values = prom.api(f"label/{label}/values", **match)
        assert len(values) <= 64, f"label {label} has {len(values)} values"


def test_model_alert_follows_the_scraped_state(prom: PrometheusServer) -> None:
    """VigilModelNotLoaded is pending exactly where the scraped model failed to load."""
    loaded = prom.query("min by (job, instance) (vigil_model_loaded)")
    alerts = prom.query('ALERTS{alertname="VigilModelNotLoaded"}')
    pending = {(a["metric"]["job"], a["metric"]["instance"]) for a in alerts}
    assert loaded
    for series in loaded:
        key = (series["metric"]["job"], series["metric"]["instance"])
        assert (key in pending) == (float(series["value"][1]) == 0), key
