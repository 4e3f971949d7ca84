"""Regression tests for issue 19, finding 7: the console against a hostile client.

Each test here failed on the console before the fix: the limiter's memory and its race,
sessions that outlived logout and password changes, login CSRF, 500s on crafted query
parameters, URL text shown on pages, CDN-loaded API docs, and open redirects by backslash.
"""

from __future__ import annotations

import gc
import re
import threading
import tracemalloc
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from console import queries
from console.app import create_app
from console.auth import LOGIN_COOKIE, SESSION_COOKIE, AuthSettings
from console.limiter import MAX_KEY_CHARS, LoginLimiter
from console.sessions import count_sessions
from console.store import AlertStore, open_store
from console.users import add_user, remove_user
from tests.console_data import demo_dataset
from tests.console_live import serve

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    st = open_store(f"sqlite:///{tmp_path / 'vigil.db'}")
    alerts, snaps = demo_dataset(windows=6, normal_accounts=2)
    st.write_alerts(alerts)
    st.write_snapshots(snaps)
    add_user(st, "ana", "analyst", PASSWORD)
    add_user(st, "vic", "viewer", PASSWORD)
    yield st
    st.close()


@pytest.fixture
def client(store: AlertStore) -> TestClient:
    # 500s come back as responses, so a crash is a failed assertion, not an exception.
    return TestClient(create_app(store, AuthSettings()), raise_server_exceptions=False)


def api_login(client: TestClient, name: str = "ana") -> str:
    r = client.post("/api/session", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def login_token(client: TestClient) -> str:
    form = client.get("/login")
    assert form.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)


# --- the login limiter -------------------------------------------------------------------


def test_limiter_memory_stays_bounded_under_long_names(client: TestClient) -> None:
    """3,000 logins with 100 KB names once grew the console by ~290 MiB, kept for good."""
    name = "x" * 100_000
    client.post("/api/session", json={"name": name + "warm-up", "password": "wrong-password"})
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(300):
        r = client.post("/api/session", json={"name": f"{i}{name}", "password": "nope-nope"})
        assert r.status_code in (401, 429)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 3_000_000, f"300 long-name logins kept {grown:,} bytes"
    keys, chars = client.app.state.limiter.held()
    # The address key and the first five names; once refused (429), nothing more is kept.
    assert keys == 6 and chars <= 6 * MAX_KEY_CHARS


def test_limiter_holds_at_most_max_keys_of_capped_length() -> None:
    limiter = LoginLimiter(max_failures=5, window_s=300, max_keys=1000)
    for i in range(20_000):
        limiter.acquire([f"ip:10.{i // 256 % 256}.{i % 256}.{i}", f"user:{i}" + "n" * 5000])
    keys, chars = limiter.held()
    assert keys == 1000 and chars <= 1000 * MAX_KEY_CHARS
    # The newest keys are the ones kept, and they still count.
    assert limiter.acquire(["user:19999" + "n" * 5000])[0] is not None


def test_limiter_books_the_attempt_before_the_check() -> None:
    limiter = LoginLimiter(max_failures=3, window_s=60)
    tickets = [limiter.acquire(["user:ana"], now=100.0)[0] for _ in range(3)]
    assert all(tickets)
    ticket, wait = limiter.acquire(["user:ana"], now=100.0)
    assert ticket is None and wait == 61  # three in flight already use the whole budget
    limiter.succeed(tickets[0])  # a right password hands its booking back
    assert limiter.acquire(["user:ana"], now=101.0)[0] is not None
    assert limiter.acquire(["user:ana"], now=161.0)[0] is not None  # the window moved on


def test_concurrent_logins_get_no_more_guesses_than_allowed(store: AlertStore) -> None:
    """Checked before and booked after the hash, 30 racing logins got ~all their guesses."""
    app = create_app(store, AuthSettings(login_max_failures=5))
    n = 30
    barrier = threading.Barrier(n)
    codes: list[int] = []
    lock = threading.Lock()
    with serve(app) as base:

        def guess(i: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                barrier.wait()
                r = c.post("/api/session", json={"name": "ana", "password": f"guess-{i}"})
            with lock:
                codes.append(r.status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(codes) == n
    assert codes.count(401) == 5 and codes.count(429) == n - 5, sorted(codes)
    failed = [e for e in queries.audit_entries(store) if e["action"] == "login_failed"]
    assert len(failed) == 5  # exactly five passwords were checked


# --- server-side sessions ----------------------------------------------------------------


def test_logout_revokes_the_session_server_side(client: TestClient, store: AlertStore) -> None:
    csrf = api_login(client)
    stolen = client.cookies[SESSION_COOKIE]
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert count_sessions(store, "ana") == 0
    replay = TestClient(client.app)
    replay.cookies.set(SESSION_COOKIE, stolen)
    assert replay.get("/api/alerts").status_code == 401


def test_password_change_and_removal_revoke_every_session(
    client: TestClient, store: AlertStore
) -> None:
    other = TestClient(client.app)
    api_login(client)
    api_login(other)
    assert count_sessions(store, "ana") == 2
    add_user(store, "ana", "analyst", "a brand new password")
    assert client.get("/api/alerts").status_code == 401
    assert other.get("/api/alerts").status_code == 401
    api_login(client, "vic")
    assert client.get("/api/me").json()["user"] == "vic"
    remove_user(store, "vic")
    assert client.get("/api/me").status_code == 401 and count_sessions(store, "vic") == 0


def test_session_cookie_is_random_and_bound_to_the_secret(store: AlertStore) -> None:
    a = TestClient(create_app(store, AuthSettings(secret=b"k" * 32)))
    api_login(a)
    cookie = a.cookies[SESSION_COOKIE]
    assert "ana" not in cookie and len(cookie) <= 200
    b = TestClient(create_app(store, AuthSettings(secret=b"j" * 32)))
    b.cookies.set(SESSION_COOKIE, cookie)
    assert b.get("/api/alerts").status_code == 401  # another deployment's key


# --- login CSRF --------------------------------------------------------------------------


def test_login_form_needs_its_csrf_token(client: TestClient, store: AlertStore) -> None:
    creds = {"name": "ana", "password": PASSWORD, "next": "/alerts"}
    bare = client.post("/login", data=creds, follow_redirects=False)
    assert bare.status_code == 403 and SESSION_COOKIE not in bare.cookies
    token = login_token(client)
    # The token is bound to this browser's nonce cookie: another browser cannot use it.
    stranger = TestClient(client.app)
    stranger.get("/login")
    r = stranger.post("/login", data={**creds, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
    # Nor does a forged cookie match the token.
    stranger.cookies.set(LOGIN_COOKIE, "0" * 32)
    r = stranger.post("/login", data={**creds, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403
    audit = [e["action"] for e in queries.audit_entries(store)]
    assert "login" not in audit and "login_failed" not in audit  # no guess was spent
    ok = client.post("/login", data={**creds, "csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303 and client.get("/alerts").status_code == 200


def test_json_login_refuses_a_cross_site_simple_request(client: TestClient) -> None:
    # A cross-site form or no-cors fetch can only send "simple" content types.
    body = f'{{"name": "ana", "password": "{PASSWORD}"}}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        r = client.post("/api/session", content=body, headers={"content-type": ctype})
        assert r.status_code == 422 and SESSION_COOKIE not in r.cookies, ctype


# --- query parameters --------------------------------------------------------------------

BAD_PARAMS = [
    ("/alerts", {"page": "9223372036854775807"}),
    ("/alerts", {"page": "99999999999999999999999"}),
    ("/alerts", {"page": "-1"}),
    ("/alerts", {"page": "0"}),
    ("/alerts", {"page": "abc"}),
    ("/alerts", {"page": "1e3"}),
    ("/alerts", {"since": "yesterday"}),
    ("/alerts", {"until": "2026-13-40T99:00:00Z"}),
    ("/alerts", {"severity": "apocalyptic"}),
    ("/alerts", {"status": "'; drop table alerts; --"}),
    ("/alerts", {"account": "a" * 5000}),
    ("/audit", {"page": "9223372036854775807"}),
    ("/audit", {"page": "-5"}),
    ("/audit", {"actor": "b" * 5000}),
    ("/api/alerts", {"page": "9223372036854775807"}),
    ("/api/alerts", {"per_page": "100000"}),
    ("/api/alerts", {"per_page": "-1"}),
    ("/api/alerts", {"since": "1e400"}),
    ("/api/audit", {"offset": "9223372036854775808"}),
    ("/api/audit", {"limit": "0"}),
    ("/export/alerts.csv", {"since": "not-a-date"}),
    ("/export/alerts.csv", {"severity": "x"}),
    ("/login", {"next": "/" + "c" * 5000}),
]


@pytest.mark.parametrize(("path", "params"), BAD_PARAMS, ids=lambda v: str(v)[:40])
def test_bad_query_parameters_get_a_4xx(client: TestClient, path: str, params: dict) -> None:
    api_login(client, "vic")
    r = client.get(path, params=params, headers={"accept": "text/html"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    if "text/html" in r.headers["content-type"]:
        for value in params.values():
            assert value not in r.text  # the error names the field, not what was sent


def test_the_last_real_page_still_works(client: TestClient) -> None:
    api_login(client, "vic")
    assert client.get("/alerts", params={"page": "1000000"}).status_code == 200
    assert client.get("/api/alerts", params={"page": "1000000"}).json()["items"] == []


# --- no free text from the URL -----------------------------------------------------------


def test_msg_parameter_shows_only_known_codes(client: TestClient) -> None:
    api_login(client, "vic")
    spoof = "Your session expired. Call +1 555 0100 to restore access"
    for path in ("/alerts", "/audit", "/accounts/acct-leak-1"):
        r = client.get(path, params={"msg": spoof})
        assert r.status_code == 200 and "555 0100" not in r.text, path
    ok = client.get("/alerts", params={"msg": "verdict_saved"})
    assert '<p class="flash" role="status">verdict saved</p>' in ok.text
    login = client.get("/login", params={"msg": spoof})
    assert "555 0100" not in login.text


def test_form_posts_redirect_with_a_code_and_errors_render_without_the_url(
    client: TestClient,
) -> None:
    csrf = api_login(client)
    aid = client.get("/api/alerts", params={"category": "key_leak"}).json()["items"][0]["alert_id"]
    r = client.post(
        f"/alerts/{aid}/status",
        data={"status": "acknowledged", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?msg=status_changed")
    bad = client.post(
        f"/alerts/{aid}/notes",
        data={"text": "   ", "csrf_token": csrf},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert bad.status_code == 422 and "not saved" in bad.text


# --- API docs and open redirects ---------------------------------------------------------


def test_api_docs_are_off_and_the_schema_is_under_the_csp(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "cdn.jsdelivr" not in r.text and "unpkg" not in r.text
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/alerts" in schema.json()["paths"]
    csp = schema.headers["content-security-policy"]
    # Scripts only from the console's own origin (its keyboard helper), none inline.
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example/", "/\\/evil.example", "https://evil.example/", "/\t/x"],
)
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    token = login_token(client)
    r = client.post(
        "/login",
        data={"name": "ana", "password": PASSWORD, "next": target, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
