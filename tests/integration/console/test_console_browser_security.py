"""Issue 19, finding 7, in headless Chromium: login CSRF from another site, logout that
really ends the session, and no attacker text from the URL on a page."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from console.app import create_app
from console.auth import SESSION_COOKIE
from console.store import open_store
from console.users import add_user
from tests.console_data import demo_dataset
from tests.console_live import free_port, serve

PASSWORD = "s3cret-analyst-pw"
MALLORY_PASSWORD = "mallory-own-password"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = open_store(str(tmp_path_factory.mktemp("console-sec") / "vigil.db"))
    alerts, snaps = demo_dataset(windows=6, normal_accounts=2)
    store.write_alerts(alerts)
    store.write_snapshots(snaps)
    add_user(store, "ana", "analyst", PASSWORD)
    add_user(store, "mallory", "viewer", MALLORY_PASSWORD)
    with serve(create_app(store)) as url:
        yield url
    store.close()


@contextmanager
def attacker_site(console: str) -> Iterator[str]:
    """A page on another site (localhost, not 127.0.0.1) with a form that signs the victim
    in to the attacker's own account: the classic login CSRF."""
    html = f"""<!doctype html><title>win a prize</title>
<form method="post" action="{console}/login">
<input type="hidden" name="name" value="mallory">
<input type="hidden" name="password" value="{MALLORY_PASSWORD}">
<input type="hidden" name="next" value="/alerts">
<input type="hidden" name="csrf_token" value="guessed">
<button type="submit" id="claim">Claim</button></form>""".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def sign_in(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/alerts")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base + "/alerts")))


def session_cookies(context) -> list[dict]:  # type: ignore[no-untyped-def]
    return [c for c in context.cookies() if c["name"] == SESSION_COOKIE]


def test_another_site_cannot_sign_the_browser_in(page, console: str) -> None:  # type: ignore[no-untyped-def]
    # The victim has seen the console's sign-in page before, so its nonce cookie exists.
    page.goto(console + "/login")
    with attacker_site(console) as site:
        page.goto(site)
        with page.expect_navigation():
            page.click("#claim")
        assert "/alerts" not in page.url
    assert session_cookies(page.context) == []
    page.goto(console + "/alerts")
    assert "/login" in page.url  # not signed in as mallory


def test_sign_out_ends_the_session_for_every_copy(browser, page, console: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, console)
    [stolen] = session_cookies(page.context)
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/login"))
    elsewhere = browser.new_context()
    try:
        elsewhere.add_cookies([stolen])  # a copy taken before the sign-out
        other = elsewhere.new_page()
        other.goto(console + "/alerts")
        assert "/login" in other.url
    finally:
        elsewhere.close()


def test_url_text_never_shows_and_docs_load_nothing(page, console: str, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, console)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(console + "/alerts?msg=Account+locked.+Call+555-0100+now")
    assert "555-0100" not in page.inner_text("body")
    assert page.locator("p.flash").count() == 0
    page.goto(console + "/alerts?page=9223372036854775807")
    assert "invalid value for page" in page.inner_text("p.error")
    (artifact_dir / "console").mkdir(exist_ok=True)
    page.screenshot(path=str(artifact_dir / "console" / "bad-page-param.png"))
    response = page.goto(console + "/docs")
    assert response is not None and response.status == 404
    assert all(u.startswith(console) for u in requests), requests  # no CDN, nothing off-site
