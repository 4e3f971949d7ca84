"""The console in headless Chromium: sign in, triage an alert, investigate an account."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from console.app import create_app
from console.labels import FileLabelPublisher, read_labels
from console.store import open_store
from console.users import add_user
from tests.console_data import CAMPAIGN, KEY_LEAK, XSS, XSS_ACCOUNT, demo_dataset
from tests.console_live import serve

PASSWORD = "s3cret-analyst-pw"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("console")
    store = open_store(str(root / "vigil.db"))
    alerts, snaps = demo_dataset()
    store.write_alerts(alerts)
    store.write_snapshots(snaps)
    add_user(store, "ana", "analyst", PASSWORD)
    labels = root / "analyst-labels.jsonl"
    with serve(create_app(store, publisher=FileLabelPublisher(labels))) as url:
        yield url, labels
    store.close()


def sign_in(page, base: str, target: str = "/alerts") -> None:  # type: ignore[no-untyped-def]
    page.goto(base + target)
    assert "/login" in page.url
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base + target.split("?")[0])))


def test_triage_journey(page, console, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    base, labels_file = console
    shots = artifact_dir / "console"
    shots.mkdir(exist_ok=True)
    page.goto(base + "/alerts")
    page.screenshot(path=str(shots / "login.png"))
    sign_in(page, base)
    assert page.inner_text("[data-testid=whoami]") == "ana"
    rows = page.locator("table.queue tbody tr")
    assert rows.count() > 10
    assert rows.first.locator(".sev").inner_text() == "critical"
    page.screenshot(path=str(shots / "queue.png"), full_page=True)

    # Filter the queue to key leaks with the form.
    page.select_option("select[name=category]", "key_leak")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"category=key_leak"))
    cats = page.locator("table.queue tbody tr td:nth-child(4)").all_inner_texts()
    assert cats and set(cats) == {"key_leak"}
    assert "key_leak 4" in page.inner_text("ul.counts")
    page.screenshot(path=str(shots / "queue-filtered.png"), full_page=True)

    page.locator("a.alert-link").first.click()
    page.wait_for_url(re.compile(r"/alerts/[0-9a-f]+"))
    alert_url = page.url
    det_rows = page.locator("table.detectors tbody tr")
    assert det_rows.count() == 3
    assert "above threshold" in det_rows.first.inner_text()
    assert "new IPs" in page.inner_text("ul.reasons")
    page.screenshot(path=str(shots / "alert.png"), full_page=True)

    page.click("#account-link")
    page.wait_for_url(re.compile(re.escape(base + "/accounts/" + KEY_LEAK)))
    assert page.inner_text("#account-title") == KEY_LEAK
    assert page.inner_text("[data-testid=plan]") == "enterprise"
    for series in ("requests", "tokens", "errors", "moderation", "new_ips"):
        chart = page.locator(f"svg.chart[data-series={series}]")
        assert int(chart.get_attribute("data-points")) == 48, series
        points = chart.locator("polyline.series").get_attribute("points").split()
        assert len(points) == 48
        ys = {float(p.split(",")[1]) for p in points}
        assert len(ys) > 1, f"{series} chart is flat"
        assert chart.locator("g.alert-marker").count() == 4
        assert chart.locator("line.onset").count() == 1
    box = page.locator("svg.chart[data-series=requests]").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 50
    assert page.locator("#alert-history tbody tr").count() == 4
    page.screenshot(path=str(shots / "account.png"), full_page=True)

    # Label the alert as confirmed misuse with a note.
    page.goto(alert_url)
    page.check("input[name=verdict][value=misuse]")
    page.select_option("#verdict-form select[name=category]", "key_leak")
    page.fill("#verdict-form textarea[name=note]", "key used from 4 new countries at once")
    page.click("#verdict-form button[type=submit]")
    page.wait_for_url(re.compile(r"msg=verdict"))
    assert "resolved" in page.inner_text("[data-testid=status]")
    assert "key used from 4 new countries" in page.inner_text("ul.history")
    page.click("text=Assign to me")
    page.wait_for_url(re.compile(r"msg=assigned"))
    assert "assigned to ana" in page.inner_text("[data-testid=status]")
    page.screenshot(path=str(shots / "alert-labelled.png"), full_page=True)

    page.goto(base + "/audit")
    audit = page.inner_text("#audit")
    assert re.search(r"ana\s+verdict", audit) and re.search(r"ana\s+assign", audit)
    assert "key used from 4 new countries" in audit
    page.screenshot(path=str(shots / "audit.png"), full_page=True)

    export = page.request.get(base + "/export/labels.csv")
    assert export.ok
    rows_csv = list(csv.DictReader(io.StringIO(export.text())))
    alert_id = alert_url.rsplit("/", 1)[-1]
    assert [(r["alert_id"], r["verdict"], r["analyst"]) for r in rows_csv] == [
        (alert_id, "misuse", "ana")
    ]
    assert read_labels(labels_file)[-1]["alert_id"] == alert_id


def test_campaign_accounts_are_related(page, console, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = console
    sign_in(page, base, "/accounts/" + CAMPAIGN[0])
    related = page.locator("#related tbody tr td:first-child").all_inner_texts()
    assert set(related[:3]) == set(CAMPAIGN[1:])
    assert int(page.locator("svg.related-graph").get_attribute("data-nodes")) >= 3
    page.screenshot(path=str(artifact_dir / "console" / "account-campaign.png"), full_page=True)
    page.click(f"#related a:text-is('{CAMPAIGN[2]}')")
    page.wait_for_url(re.compile(re.escape("/accounts/" + CAMPAIGN[2])))
    assert page.inner_text("#account-title") == CAMPAIGN[2]


def test_script_payloads_render_as_text(browser, console, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = console
    # Without the CSP, so this checks the escaping itself, not only the policy.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        sign_in(page, base)
        page.goto(base + "/alerts?account=pwned")
        assert XSS_ACCOUNT in page.inner_text("table.queue")
        page.locator("td.acct a").first.click()
        page.wait_for_url(re.compile(re.escape("/accounts/" + quote(XSS_ACCOUNT, safe=""))))
        assert page.inner_text("#account-title") == XSS_ACCOUNT
        assert XSS in page.inner_text("#user-agents")
        page.screenshot(path=str(artifact_dir / "console" / "account-xss.png"), full_page=True)
        page.goto(base + "/alerts?account=pwned")
        page.locator("a.alert-link").first.click()
        page.wait_for_url(re.compile(r"/alerts/[0-9a-f]+"))
        assert XSS in page.inner_text("ul.reasons")
        assert page.evaluate("window.__pwned") is None
        # The one script is the console's own keyboard helper, loaded from its origin.
        srcs = page.locator("script").evaluate_all("els => els.map(e => e.getAttribute('src'))")
        assert srcs == ["/static/keys.js"]
        assert dialogs == []
    finally:
        context.close()
