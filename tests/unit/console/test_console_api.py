"""The console's HTTP surface: sign-in, roles, CSRF, proxy header, rate limit, exports."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from console import queries
from console.app import create_app
from console.auth import SESSION_COOKIE, AuthSettings
from console.labels import FileLabelPublisher, read_labels
from console.store import AlertStore, open_store
from console.users import add_user, issue_token
from tests.console_data import XSS, XSS_ACCOUNT, demo_dataset

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    st = open_store(f"sqlite:///{tmp_path / 'vigil.db'}")
    alerts, snaps = demo_dataset(windows=24, normal_accounts=4)
    st.write_alerts(alerts)
    st.write_snapshots(snaps)
    add_user(st, "ana", "analyst", PASSWORD)
    add_user(st, "vic", "viewer", PASSWORD)
    yield st
    st.close()


@pytest.fixture
def labels_path(tmp_path: Path) -> Path:
    return tmp_path / "analyst-labels.jsonl"


@pytest.fixture
def client(store: AlertStore, labels_path: Path) -> TestClient:
    app = create_app(
        store,
        AuthSettings(
            trusted_header="X-Forwarded-User",
            trusted_role_header="X-Forwarded-Role",
            trusted_proxies=("10.0.0.1",),
        ),
        FileLabelPublisher(labels_path),
    )
    return TestClient(app)


def login(client: TestClient, name: str) -> str:
    r = client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def form_login(client: TestClient, name: str, password: str, next: str = "/alerts"):  # type: ignore[no-untyped-def]
    """Sign in through the HTML form as a browser does: fetch it first for its CSRF token."""
    form = client.get("/login", params={"next": next})
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    data = {"name": name, "password": password, "next": next, "csrf_token": token}
    return client.post("/login", data=data, follow_redirects=False)


def first_alert(client: TestClient, category: str) -> str:
    return client.get("/api/alerts", params={"category": category}).json()["items"][0]["alert_id"]


def test_nothing_is_reachable_without_signing_in(client: TestClient) -> None:
    for path in (
        "/api/alerts",
        "/api/audit",
        "/api/labels",
        "/export/alerts.csv",
        "/export/labels.csv",
        "/cases/acct-leak-1",
        "/api/accounts/acct-leak-1",
    ):
        assert client.get(path).status_code == 401, path
    r = client.get("/alerts", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert client.post("/api/alerts/x/verdict", json={"verdict": "needs_info"}).status_code == 401


def test_password_login_and_viewer_cannot_write(client: TestClient) -> None:
    csrf = login(client, "vic")
    assert client.get("/api/alerts").json()["total"] > 0
    aid = first_alert(client, "key_leak")
    r = client.post(
        f"/api/alerts/{aid}/verdict", json={"verdict": "needs_info"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    assert client.get(f"/api/alerts/{aid}").json()["verdict"] is None


def test_analyst_needs_csrf_token_with_a_cookie(client: TestClient, labels_path: Path) -> None:
    csrf = login(client, "ana")
    aid = first_alert(client, "key_leak")
    body = {"verdict": "misuse", "category": "key_leak", "note": "keys used from 4 countries"}
    assert client.post(f"/api/alerts/{aid}/verdict", json=body).status_code == 403
    bad = client.post(f"/api/alerts/{aid}/verdict", json=body, headers={"X-CSRF-Token": "x"})
    assert bad.status_code == 403
    ok = client.post(f"/api/alerts/{aid}/verdict", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    assert read_labels(labels_path)[0]["alert_id"] == aid
    audit = client.get("/api/audit").json()
    assert audit[0]["actor"] == "ana" and audit[0]["action"] == "verdict"
    # The HTML form needs the token too.
    r = client.post(f"/alerts/{aid}/status", data={"status": "open"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        f"/alerts/{aid}/status", data={"status": "open", "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert client.get(f"/api/alerts/{aid}").json()["status"] == "open"


def test_tampered_or_foreign_session_is_rejected(client: TestClient, store: AlertStore) -> None:
    login(client, "vic")
    cookie = client.cookies[SESSION_COOKIE]
    body, sig = cookie.split(".")
    client.cookies.set(SESSION_COOKIE, body + "." + sig[::-1])
    assert client.get("/api/alerts").status_code == 401
    other = TestClient(create_app(store, AuthSettings()))  # another secret
    other.cookies.set(SESSION_COOKIE, cookie)
    assert other.get("/api/alerts").status_code == 401


def test_bearer_token(client: TestClient, store: AlertStore) -> None:
    token = issue_token(store, "ana")
    h = {"Authorization": f"Bearer {token}"}
    aid = first_alert(client.__class__(client.app, headers=h), "spam_campaign")
    r = client.post(f"/api/alerts/{aid}/assign", json={"assignee": "ana"}, headers=h)
    assert r.status_code == 200
    assert client.get(f"/api/alerts/{aid}", headers=h).json()["assignee"] == "ana"
    assert client.get("/api/alerts", headers={"Authorization": "Bearer nope"}).status_code == 401
    viewer = issue_token(store, "vic")
    r = client.post(
        f"/api/alerts/{aid}/status",
        json={"status": "resolved"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403


def test_trusted_proxy_header(store: AlertStore, labels_path: Path) -> None:
    settings = AuthSettings(
        trusted_header="X-Forwarded-User",
        trusted_role_header="X-Forwarded-Role",
        trusted_proxies=("10.0.0.1",),
    )
    app = create_app(store, settings, FileLabelPublisher(labels_path))
    via_proxy = TestClient(app, client=("10.0.0.1", 5000))
    elsewhere = TestClient(app, client=("10.0.0.2", 5000))
    h = {"X-Forwarded-User": "carol@example.com", "X-Forwarded-Role": "analyst"}
    assert elsewhere.get("/api/alerts", headers=h).status_code == 401
    me = via_proxy.get("/api/me", headers=h).json()
    assert me["user"] == "carol@example.com" and me["role"] == "analyst"
    aid = first_alert(via_proxy.__class__(app, client=("10.0.0.1", 1), headers=h), "anomaly")
    no_csrf = via_proxy.post(f"/api/alerts/{aid}/notes", json={"text": "seen"}, headers=h)
    assert no_csrf.status_code == 403
    r = via_proxy.post(
        f"/api/alerts/{aid}/notes",
        json={"text": "seen"},
        headers={**h, "X-CSRF-Token": me["csrf_token"]},
    )
    assert r.status_code == 200
    # A known user keeps the role stored for them, whatever the role header says.
    vic = {"X-Forwarded-User": "vic", "X-Forwarded-Role": "analyst"}
    assert via_proxy.get("/api/me", headers=vic).json()["role"] == "viewer"


def test_login_attempts_are_rate_limited(client: TestClient, store: AlertStore) -> None:
    for _ in range(5):
        r = client.post("/api/session", json={"name": "ana", "password": "wrong-password"})
        assert r.status_code == 401
    r = client.post("/api/session", json={"name": "ana", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    page = form_login(client, "ana", PASSWORD)
    assert page.status_code == 429 and "too many" in page.text
    actions = [e["action"] for e in queries.audit_entries(store)]
    assert actions == ["login_failed"] * 5  # refused attempts never reach the password check


def test_snooze_rules(client: TestClient) -> None:
    h = {"X-CSRF-Token": login(client, "ana")}
    aid = (
        first_alert(client, "distillation")
        if client.get("/api/alerts", params={"category": "distillation"}).json()["total"]
        else first_alert(client, "anomaly")
    )
    too_long = {
        "verdict": "false_positive",
        "snooze_detectors": ["iforest"],
        "snooze_days": 181,
        "snooze_reason": "batch",
    }
    assert client.post(f"/api/alerts/{aid}/verdict", json=too_long, headers=h).status_code == 422
    not_fp = {**too_long, "verdict": "needs_info", "snooze_days": 10}
    assert client.post(f"/api/alerts/{aid}/verdict", json=not_fp, headers=h).status_code == 422
    ok = {**too_long, "snooze_days": 180}
    assert client.post(f"/api/alerts/{aid}/verdict", json=ok, headers=h).status_code == 200
    snoozes = client.get("/api/snoozes").json()
    assert [s["detector"] for s in snoozes] == ["iforest"]


def test_attacker_controlled_fields_are_escaped(client: TestClient) -> None:
    login(client, "vic")
    r = client.get("/accounts/" + quote(XSS_ACCOUNT, safe=""))
    assert r.status_code == 200
    assert "<script>" not in r.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in r.text
    # Only the console's own keyboard script may run: no inline script, no other origin.
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    queue = client.get("/alerts", params={"category": "anomaly"})
    assert "<script>" not in queue.text and "&lt;script&gt;" in queue.text
    cases = client.get("/queue", params={"q": "pwned"})
    assert "<script>" not in cases.text and "&lt;script&gt;" in cases.text
    case_id = client.get("/api/cases", params={"q": "pwned"}).json()["items"][0]["case_id"]
    case = client.get(f"/case/{case_id}")
    assert XSS not in case.text and "&lt;script&gt;" in case.text
    aid = client.get("/api/alerts", params={"account": "pwned"}).json()["items"][0]["alert_id"]
    detail = client.get(f"/alerts/{aid}")
    assert XSS not in detail.text and "&lt;script&gt;" in detail.text


def test_csv_and_case_exports(client: TestClient) -> None:
    h = {"X-CSRF-Token": login(client, "ana")}
    aid = first_alert(client, "key_leak")
    client.post(
        f"/api/alerts/{aid}/verdict",
        json={"verdict": "misuse", "category": "key_leak", "note": "=HYPERLINK(1)"},
        headers=h,
    )
    rows = list(csv.DictReader(io.StringIO(client.get("/export/labels.csv").text)))
    assert rows[0]["alert_id"] == aid and rows[0]["verdict"] == "misuse"
    assert rows[0]["note"] == "'=HYPERLINK(1)"  # never a live spreadsheet formula
    queue = list(
        csv.DictReader(
            io.StringIO(client.get("/export/alerts.csv", params={"category": "key_leak"}).text)
        )
    )
    assert {r["category"] for r in queue} == {"key_leak"} and len(queue) == 4
    case = client.get("/cases/acct-leak-1")
    assert "attachment" in case.headers["content-disposition"]
    data = case.json()
    assert data["account"]["account_id"] == "acct-leak-1"
    assert len(data["alerts"]) == 4 and data["labels"][0]["verdict"] == "misuse"
    assert all(a["reasons"] for a in data["alerts"])


def test_openapi_documents_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/verdict",
        "/api/accounts/{account_id}",
        "/api/audit",
        "/export/labels.csv",
        "/cases/{account_id}",
    ):
        assert p in paths, p
    assert "/alerts" not in paths  # pages stay out of the API schema


def test_login_page_sets_session_and_redirects_only_locally(client: TestClient) -> None:
    r = form_login(client, "ana", PASSWORD, next="//evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    page = client.get("/alerts")
    assert page.status_code == 200
    assert re.search(r'name="csrf_token" value="[^"]+"', page.text)


def test_bad_filter_values_are_reported_not_crashed(client: TestClient) -> None:
    login(client, "vic")
    assert client.get("/api/alerts", params={"since": "yesterday"}).status_code == 422
    page = client.get("/alerts", params={"until": "soon"}, headers={"accept": "text/html"})
    assert page.status_code == 422 and "RFC3339" in page.text
    assert client.get("/alerts/no-such-alert").status_code == 404
    assert client.get("/api/accounts/nobody").status_code == 404
