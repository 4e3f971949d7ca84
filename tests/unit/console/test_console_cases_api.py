"""The JSON API of cases: the queue, case verdicts, bulk actions on cases and alerts,
snoozes, roles and CSRF; and the `[console]` config section."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.labels import FileLabelPublisher, read_labels
from console.store import AlertStore, open_store
from console.users import add_user, issue_token
from streams.core.config import ConfigError
from streams.core.config_load import config_from_dict
from tests.console_data import KEY_LEAK, STORM, storm_dataset

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    st = open_store(f"sqlite:///{tmp_path / 'vigil.db'}")
    alerts, snaps = storm_dataset(windows=48)
    st.write_alerts(alerts)
    st.write_snapshots(snaps)
    add_user(st, "ana", "analyst", PASSWORD)
    add_user(st, "vic", "viewer", PASSWORD)
    yield st
    st.close()


@pytest.fixture
def client(store: AlertStore, tmp_path: Path) -> TestClient:
    app = create_app(
        store, publisher=FileLabelPublisher(tmp_path / "labels.jsonl"), sla_minutes={"low": 5}
    )
    return TestClient(app)


def login(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def test_bulk_verdict_over_a_filter_through_the_api(client: TestClient, tmp_path: Path) -> None:
    h = login(client, "ana")
    queue = client.get("/api/cases", params={"category": "spam_campaign"}).json()
    assert queue["total"] == 2 and {c["kind"] for c in queue["items"]} == {"campaign"}
    body = {
        "action": "verdict",
        "filter": {"category": "spam_campaign"},
        "verdict": {"verdict": "misuse", "category": "spam_campaign", "note": "storm"},
    }
    assert client.post("/api/cases/bulk", json=body).status_code == 403  # no CSRF token
    r = client.post("/api/cases/bulk", json=body, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["cases"]) == 2 and out["alerts"] == 3 * len(STORM) + 4 == out["labels"]
    audit = client.get("/api/audit", params={"limit": 5000}).json()
    per_alert = Counter(e["target"] for e in audit if e["action"] == "verdict")
    assert all(per_alert[a] == 1 for a in out["alert_ids"])
    assert len(read_labels(tmp_path / "labels.jsonl")) == out["labels"]
    assert client.get("/api/cases", params={"category": "spam_campaign"}).json()["total"] == 0
    closed = client.get("/api/cases", params={"category": "spam_campaign", "view": "closed"})
    assert closed.json()["total"] == 2


def test_case_actions_and_alert_bulk(client: TestClient) -> None:
    h = login(client, "ana")
    leak = client.get("/api/cases", params={"q": KEY_LEAK, "kind": "account"}).json()["items"][0]
    cid = leak["case_id"]
    assert client.post(f"/api/cases/{cid}/assign", json={"assignee": "ana"}, headers=h).is_success
    mine = client.get("/api/cases", params={"assignee": "ana"}).json()["items"]
    assert [c["case_id"] for c in mine] == [cid] and mine[0]["status"] == "in_review"
    assert client.post(f"/api/cases/{cid}/notes", json={"text": "call owner"}, headers=h).is_success
    detail = client.get(f"/api/cases/{cid}").json()
    assert detail["notes"][-1]["text"] == "call owner"
    # Only contributing detectors, each with its score and threshold.
    assert {d["name"] for d in detail["alerts"][0]["contributed"]} == {
        "iforest",
        "baseline",
        "geo_velocity",
    }
    ids = [a["alert_id"] for a in detail["alerts"]]
    r = client.post("/api/alerts/bulk", json={"action": "close", "alert_ids": ids[:2]}, headers=h)
    assert r.status_code == 200 and r.json()["alerts"] == 2
    assert client.get(f"/api/cases/{cid}").json()["case"]["open_alerts"] == 2
    r = client.post("/api/alerts/bulk", json={"action": "close", "alert_ids": ids[2:]}, headers=h)
    # The last open alert resolved: the case closes with it.
    assert client.get(f"/api/cases/{cid}").json()["case"]["status"] == "closed"
    bad = client.post(f"/api/cases/{cid}/status", json={"status": "done"}, headers=h)
    assert bad.status_code == 422
    assert client.get("/api/cases/999999").status_code == 404
    # Low severity waits 5 minutes here (from the app's SLA setting).
    q = client.get("/api/cases", params={"severity": "low"}).json()
    assert all(c["sla"] == "ok" for c in q["items"])


def test_snooze_api_and_viewer_limits(client: TestClient, store: AlertStore) -> None:
    h = login(client, "vic")
    body = {"account_id": KEY_LEAK, "detector": "iforest", "days": 3, "reason": "travel"}
    assert client.post("/api/snoozes", json=body, headers=h).status_code == 403
    assert client.get("/api/cases").status_code == 200
    token = issue_token(store, "ana")
    bearer = {"Authorization": f"Bearer {token}"}
    s = client.post("/api/snoozes", json=body, headers=bearer).json()
    assert s["detector"] == "iforest"
    running = client.get("/api/snoozes", headers=bearer).json()
    assert [(r["account_id"], r["detector"], r["state"]) for r in running] == [
        (KEY_LEAK, "iforest", "active")
    ]
    lifted = client.post(f"/api/snoozes/{running[0]['id']}/lift", headers=bearer)
    assert lifted.status_code == 200
    assert client.get("/api/snoozes", headers=bearer).json() == []
    again = client.post(f"/api/snoozes/{running[0]['id']}/lift", headers=bearer)
    assert again.status_code == 422 and "already ended" in again.json()["detail"]
    bad = client.get("/api/cases", params={"since": "yesterday"}, headers=bearer)
    assert bad.status_code == 422 and "RFC 3339" in bad.json()["detail"]


def test_an_id_past_64_bits_names_no_row_and_is_refused_without_a_500(
    client: TestClient,
) -> None:
    """Regression: the driver refused to bind such an id (OverflowError) and every route
    taking a case, snooze or backtest id answered 500."""
    h = login(client, "ana")
    huge = str(2**63)
    for path in (f"/api/cases/{huge}", f"/api/backtests/{huge}"):
        assert client.get(path).status_code == 422, path
    for path, body in (
        (f"/api/cases/{huge}/notes", {"text": "x"}),
        (f"/api/cases/{huge}/status", {"status": "closed"}),
        (f"/api/cases/{huge}/assign", {"assignee": "ana"}),
        (f"/api/snoozes/{huge}/lift", None),
        ("/api/cases/bulk", {"action": "status", "status": "closed", "case_ids": [2**63]}),
    ):
        assert client.post(path, json=body, headers=h).status_code == 422, path
    assert client.get(f"/case/{huge}").status_code == 404
    r = client.post(
        "/queue/bulk",
        data={
            "scope": "page",
            "page_ids": f"{huge},1",
            "action": "assign_me",
            "csrf_token": h["X-CSRF-Token"],
        },
        follow_redirects=False,
    )
    assert r.status_code < 500
    assert client.get(f"/api/cases/{2**63 - 1}").status_code == 404  # the largest id: no row


def test_console_config_section() -> None:
    cfg = config_from_dict(
        {"console": {"sla_minutes": [600, 120, 30, 5], "common_link_share": 0.05}}
    )
    assert cfg.console.sla_minutes == (600.0, 120.0, 30.0, 5.0)
    with pytest.raises(ConfigError, match="sla_minutes"):
        config_from_dict({"console": {"sla_minutes": [600, 120, 0, 5]}})
    with pytest.raises(ConfigError, match="common_link_share"):
        config_from_dict({"console": {"common_link_share": 2}})
