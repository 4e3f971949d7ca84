"""Alert rules and Alertmanager routing, checked with the real promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROM_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
# Every runbook_url is this template plus the runbook's file name; Prometheus fills in the
# external label (deploy/prometheus/prometheus.yml) so the base is configured in one place.
RUNBOOK_BASE = "{{ $externalLabels.runbook_base }}"
HINTS = {
    "promtool": "`sudo apt-get install -y prometheus` (promtool ships with it)",
    "amtool": "`sudo apt-get install -y prometheus-alertmanager` (amtool ships with it)",
}
# What the pipeline must page or warn about; each needs a rule.
REQUIRED_ALERTS = {
    "VigilWorkersAbsent",
    "VigilAlertLatencyBudgetFastBurn",
    "VigilAlertLatencyBudgetSlowBurn",
    "VigilStoreSinkDown",
    "VigilStoreSinkLagging",
    "VigilStoreSinkErrors",
    "VigilConsoleDown",
    "VigilConsoleErrors",
    "VigilBatchFailures",
    "VigilCampaignFiguresIncomplete",
    "VigilDeadLetterSpike",
    "VigilModelVersionMismatch",
    "VigilConfigVersionMismatch",
    "VigilAnalystBacklogOverSLA",
    "VigilConsumptionStalled",
    "VigilConsumerLagGrowing",
    "VigilDeadLetterRateHigh",
    "VigilAlertStorm",
    "VigilAlertsStopped",
    "VigilModelNotLoaded",
    "VigilCheckpointTooOld",
}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {HINTS[name]}, or run .ci/install-obs.sh")
    return found


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def groups() -> list[dict]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]


def alerts() -> list[dict]:
    return [rule for group in groups() for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_is_clean() -> None:
    proc = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS
    proc = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_fail_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests notice when a rule stops firing."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for path in RULE_FILES:
        broken = path.read_text().replace("vigil_model_loaded == 0", "vigil_model_loaded == 7")
        (tmp_path / "rules" / path.name).write_text(broken)
    # Only the file with the model test: the baseline file takes longer and adds nothing.
    unit = next(p for p in RULE_TESTS if "VigilModelNotLoaded" in p.read_text())
    shutil.copy(unit, tmp_path / "tests" / unit.name)
    proc = run(tool("promtool"), "test", "rules", f"tests/{unit.name}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "VigilModelNotLoaded" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing unit test"
    assert names - silent == set(), "alerts without a silent unit test"


def test_required_alerts_exist() -> None:
    assert {rule["alert"] for rule in alerts()} >= REQUIRED_ALERTS
    assert len(alerts()) >= 14


def test_burn_rate_pair_reads_a_seconds_histogram() -> None:
    """Fast and slow windows over the event-to-alert latency histogram both runners export."""
    rules = {r.get("alert") or r["record"]: r for g in groups() for r in g["rules"]}
    fast, slow = rules["VigilAlertLatencyBudgetFastBurn"], rules["VigilAlertLatencyBudgetSlowBurn"]
    assert "ratio_rate1h" in fast["expr"] and "ratio_rate5m" in fast["expr"]
    assert "ratio_rate6h" in slow["expr"] and "ratio_rate30m" in slow["expr"]
    for window in ("5m", "30m", "1h", "6h"):
        expr = rules[f"vigil:alert_latency_slo_errors:ratio_rate{window}"]["expr"]
        assert f'vigil_alert_latency_seconds_bucket{{le="120.0"}}[{window}]' in expr


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_is_documented_with_a_runbook(rule: dict) -> None:
    notes = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert notes.get(key, "").strip(), f"{rule['alert']} lacks {key}"
    assert rule["labels"]["severity"] in {"critical", "warning"}
    base, _, name = notes["runbook_url"].rpartition("/")
    assert base == RUNBOOK_BASE, f"{rule['alert']}: runbook_url must start with {RUNBOOK_BASE}"
    runbook = REPO / "docs" / "runbooks" / name
    assert runbook.is_file(), f"{runbook} missing"
    text = runbook.read_text()
    assert text.startswith(f"# {rule['alert']}\n")
    assert "## What to check" in text and "## What to do" in text


def test_runbook_base_is_configured_once_and_served_by_the_console() -> None:
    """The compose Prometheus sets the base; the console answers at it with the runbook."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    base = config["global"]["external_labels"]["runbook_base"]
    url = urlparse(base)
    assert url.scheme in {"http", "https"} and "example" not in url.netloc, base
    assert url.path == "/runbooks"
    assert "example.org" not in "".join(p.read_text() for p in RULE_FILES)

    from fastapi.testclient import TestClient

    from console.app import create_app
    from console.store import open_store

    client = TestClient(create_app(open_store("sqlite://")))
    for rule in alerts():
        name = rule["annotations"]["runbook_url"].rpartition("/")[2]
        page = client.get(f"{url.path}/{name}")
        assert page.status_code == 200 and page.text.startswith(f"# {rule['alert']}\n"), name
    assert client.get(f"{url.path}/../../README.md").status_code == 404


def test_every_runbook_belongs_to_a_rule() -> None:
    urls = {Path(urlparse(r["annotations"]["runbook_url"]).path).name for r in alerts()}
    on_disk = {p.name for p in (REPO / "docs" / "runbooks").glob("*.md")}
    assert on_disk == urls


def test_promtool_check_config_with_the_rules(tmp_path: Path) -> None:
    """The compose Prometheus config, with its rule glob pointed at the repository."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(PROM_DIR / "rules" / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    proc = run(tool("promtool"), "check", "config", str(local))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in proc.stdout
    for path in RULE_FILES:
        count = sum(len(g["rules"]) for g in yaml.safe_load(path.read_text())["groups"])
        assert f"{path}\n  SUCCESS: {count} rules found" in proc.stdout
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert "vigil-worker" in jobs


def test_alertmanager_config_is_valid() -> None:
    proc = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alertmanager_routes_each_alert(rule: dict) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    args = [f"{k}={v}" for k, v in labels.items()]
    proc = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = "vigil-pager" if labels["severity"] == "critical" else "vigil-team"
    assert proc.stdout.strip() == expected
