"""Dashboards: generated from code, linted, and holding the panels on-call needs."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from dashboards import build
from dashboards.lint import lint, panels

REPO = Path(__file__).resolve().parents[3]
JSON_DIR = REPO / "dashboards" / "json"
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))}
LINTER_HINT = (
    "Grafana's dashboard linter: `GOBIN=/usr/local/bin go install "
    "github.com/grafana/dashboard-linter@<version in .ci/install-obs.sh>` (needs Go 1.23+), "
    "or run .ci/install-obs.sh"
)
# (dashboard uid, panel title, a metric its queries must read)
REQUIRED_PANELS = [
    ("vigil-misuse-overview", "Alerts per minute by category and severity", "vigil_alerts_total"),
    (
        "vigil-misuse-overview",
        "Share of scored account-windows alerted",
        "vigil_account_windows_scored_total",
    ),
    ("vigil-misuse-overview", "Active accounts alerted per hour", "vigil_active_accounts"),
    ("vigil-misuse-overview", "Alert budget used", "$alert_budget"),
    ("vigil-pipeline-health", "Events per second in and out", "vigil_events_processed_total"),
    ("vigil-pipeline-health", "Consumer lag by partition", "vigil_consumer_lag"),
    ("vigil-pipeline-health", "Event-time lag", "vigil_event_time_lag_seconds_bucket"),
    (
        "vigil-pipeline-health",
        "Processing latency per batch",
        "vigil_processing_latency_seconds_bucket",
    ),
    ("vigil-pipeline-health", "Dead-letter rate by reason", "vigil_events_rejected_total"),
    ("vigil-pipeline-health", "Workers and rebalances", "vigil_rebalances_total"),
    ("vigil-pipeline-health", "Checkpoint age", "vigil_checkpoint_age_seconds"),
    ("vigil-detectors-models", "Score distribution: $detector", "vigil_detector_score_bucket"),
    ("vigil-detectors-models", "Score quantiles by detector", "vigil_detector_score_bucket"),
    ("vigil-detectors-models", "Alert rate per detector", "vigil_alerts_total"),
    ("vigil-detectors-models", "Model versions", "vigil_model_info"),
    ("vigil-detectors-models", "Detector versions", "vigil_detectors_info"),
    (
        "vigil-detectors-models",
        "Classifier inference latency",
        "vigil_classifier_inference_seconds_bucket",
    ),
]


def test_json_matches_the_code() -> None:
    rendered = build.rendered()
    assert set(rendered) == set(JSON_DIR.glob("*.json")), "run python -m dashboards.build"
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m dashboards.build"


def test_three_dashboards_with_stable_uids() -> None:
    assert set(DASHBOARDS) == {
        "vigil-misuse-overview",
        "vigil-pipeline-health",
        "vigil-detectors-models",
    }
    for name, board in DASHBOARDS.items():
        assert board["uid"] == name
        assert "id" not in board


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_lint_rules_pass(name: str) -> None:
    findings = lint(DASHBOARDS[name])
    assert not findings, "\n".join(map(str, findings))


def test_lint_rules_catch_common_mistakes() -> None:
    board = copy.deepcopy(DASHBOARDS["vigil-pipeline-health"])
    victim = next(p for p in panels(board) if p["type"] == "timeseries")
    victim["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    victim["description"] = ""
    victim["fieldConfig"]["defaults"]["unit"] = "furlongs"
    victim["targets"][0]["expr"] = "sum(rate(vigil_events_read_total[5m]))"
    board["templating"]["list"] = [
        v for v in board["templating"]["list"] if v["name"] != "instance"
    ]
    other = next(p for p in panels(board) if p["type"] == "stat")
    other["targets"] = []
    third = next(p for p in panels(board) if p["type"] == "timeseries" and p is not victim)
    third["targets"][0]["expr"] = 'sum(vigil_events_read_total{job=~"$job"})'

    rules = {f.rule for f in lint(board)}
    assert rules >= {
        "panel-datasource-rule",
        "panel-title-description-rule",
        "panel-units-rule",
        "target-rate-interval-rule",
        "target-job-rule",
        "target-instance-rule",
        "template-instance-rule",
        "no-hardcoded-datasource",
        "panel-no-targets-rule",
        "target-counter-agg-rule",
    }


def linter_binary() -> str | None:
    """On PATH, or where `go install` puts it by default."""
    found = shutil.which("dashboard-linter")
    if found or shutil.which("go") is None:
        return found
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True).stdout
    candidate = Path(gopath.strip()) / "bin" / "dashboard-linter"
    return str(candidate) if candidate.exists() else None


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_grafana_dashboard_linter(name: str) -> None:
    """Grafana's own linter, strict: warnings count as errors."""
    binary = linter_binary()
    if binary is None:
        # The Go module proxy may refuse the linter; the same rules ran in test_lint_rules_pass.
        warnings.warn(f"dashboard-linter not installed; {LINTER_HINT}", stacklevel=1)
        assert not lint(DASHBOARDS[name])
        return
    proc = subprocess.run(
        [binary, "lint", "--strict", str(JSON_DIR / f"{name}.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("uid", "title", "metric"), REQUIRED_PANELS)
def test_required_panel(uid: str, title: str, metric: str) -> None:
    found = [p for p in panels(DASHBOARDS[uid]) if p["title"] == title]
    assert found, f"{uid} has no panel {title!r}"
    exprs = " ".join(t["expr"] for p in found for t in p.get("targets", []))
    assert metric in exprs


def test_latency_panels_show_p50_and_p99() -> None:
    board = DASHBOARDS["vigil-pipeline-health"]
    latency = next(p for p in panels(board) if p["title"] == "Processing latency per batch")
    exprs = [t["expr"] for t in latency["targets"]]
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)


def test_console_is_linked_through_a_variable() -> None:
    for uid in ("vigil-misuse-overview", "vigil-detectors-models"):
        board = DASHBOARDS[uid]
        names = {v["name"]: v for v in board["templating"]["list"]}
        assert names["console_url"]["type"] == "textbox"
        assert any(link.get("url") == "${console_url}" for link in board["links"])
    text = json.dumps(DASHBOARDS["vigil-misuse-overview"])
    assert "${console_url}/alerts?category=${__field.labels.category}" in text


def test_provisioning_loads_these_files() -> None:
    provider = yaml.safe_load(
        (REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "vigil.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../dashboards/json:{provider['options']['path']}:ro" in mounts
    sources = yaml.safe_load(
        (
            REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
        ).read_text()
    )["datasources"]
    assert [s["type"] for s in sources] == ["prometheus"]
    assert sources[0]["url"] == "http://prometheus:9090"
