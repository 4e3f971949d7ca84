"""Alert-storm triage in headless Chromium: one bulk verdict closes a ten-account spam
campaign (every member alert audited on its own), and three cases are triaged with the
keyboard alone, from the queue to a verdict to the next case."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from console.app import create_app
from console.casework import refresh
from console.labels import FileLabelPublisher, read_labels
from console.schema import alerts, case_accounts
from console.store import AlertStore, open_store
from console.users import add_user
from tests.console_data import STORM, storm_dataset
from tests.console_live import serve

PASSWORD = "s3cret-analyst-pw"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, AlertStore, Path]]:
    store = open_store(str(tmp_path / "vigil.db"))
    alerts, snaps = storm_dataset()
    store.write_alerts(alerts)
    store.write_snapshots(snaps)
    add_user(store, "ana", "analyst", PASSWORD)
    age_arrivals(store)
    labels = tmp_path / "analyst-labels.jsonl"
    with serve(create_app(store, publisher=FileLabelPublisher(labels))) as url:
        yield url, store, labels
    store.close()


def age_arrivals(store: AlertStore) -> None:
    """Alerts that arrived minutes to hours ago (as in a real queue), so waiting times and
    SLA colours differ between cases."""
    waits = {"acct-leak-1": 40 * 60, STORM[0]: 20 * 60}
    with store.engine.begin() as conn:
        for acct, case_id in conn.execute(select(case_accounts)).all():
            wait = waits.get(acct, 600 + (sum(map(ord, acct)) * 431) % 30_000)
            conn.execute(
                update(alerts)
                .where(alerts.c.account_id == acct)
                .values(arrived_at=alerts.c.arrived_at - wait)
            )
            refresh(conn, {case_id})


def sign_in(page, base: str, target: str = "/queue") -> None:  # type: ignore[no-untyped-def]
    page.goto(base + target)
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base + target.split("?")[0])))


def case_id_of(url: str) -> int:
    m = re.search(r"/case/(\d+)", url)
    assert m, url
    return int(m.group(1))


def test_alert_storm_closed_with_one_bulk_verdict(page, console, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    base, _store, labels = console
    shots = artifact_dir / "console"
    shots.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, base)
    rows = page.locator("#case-queue tbody tr")
    assert rows.first.locator(".sev").inner_text() == "critical"
    storm_row = page.locator("#case-queue tbody tr", has_text="10 linked accounts")
    assert storm_row.count() == 1
    assert "campaign" in storm_row.locator("a.case-link").inner_text()
    assert storm_row.locator("td").nth(6).inner_text().startswith("30")
    # Only contributing detectors are listed: rules, population and baseline scored 0.
    dets = storm_row.locator("td").nth(7).inner_text()
    assert "campaign" in dets and "rules" not in dets and "population" not in dets
    assert page.locator("#age-counts").inner_text().count("\n") >= 4
    page.screenshot(path=str(shots / "cases-queue.png"), full_page=False)

    # The campaign case: every member on one time axis.
    storm_row.locator("a.case-link").click()
    page.wait_for_url(re.compile(r"/case/\d+"))
    case_id = case_id_of(page.url)
    assert page.locator("#case-accounts a[href^='/accounts/']").count() == len(STORM)
    assert int(page.locator("svg.shared").get_attribute("data-series-count")) == len(STORM)
    assert page.locator("svg.shared g.alert-marker").count() == 30
    assert page.locator("#case-alerts tbody tr").count() == 30
    page.screenshot(path=str(shots / "campaign-case.png"), full_page=False)

    # Back in the queue: tick the campaign, one verdict for all of it.
    page.goto(base + "/queue")
    page.check(f"input[name=case_id][value='{case_id}']")
    page.select_option("#bulk-action", "misuse")
    page.select_option("#bulk select[name=category]", "spam_campaign")
    page.fill("#bulk input[name=note]", "storm of throw-away accounts, same prompts")
    page.locator("#bulk").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "bulk-action.png"), full_page=False)
    page.click("#bulk-submit")
    page.wait_for_url(re.compile(r"msg="))
    assert "1 case(s), 30 alert(s)" in page.inner_text("p.flash")
    assert page.locator("#case-queue tbody tr", has_text="10 linked accounts").count() == 0

    case = page.request.get(f"{base}/api/cases/{case_id}").json()
    assert case["case"]["status"] == "closed" and case["case"]["verdict"] == "misuse"
    member_alerts = {a["alert_id"] for a in case["alerts"]}
    assert len(member_alerts) == 30 and {a["account_id"] for a in case["alerts"]} == set(STORM)
    audit = page.request.get(f"{base}/api/audit?limit=5000").json()
    per_alert = Counter(e["target"] for e in audit if e["action"] == "verdict")
    assert all(per_alert[a] == 1 for a in member_alerts)
    assert all(e["actor"] == "ana" for e in audit if e["target"] in member_alerts)
    assert {lab["alert_id"] for lab in read_labels(labels)} == member_alerts


def test_keyboard_only_triage_of_three_cases(page, console) -> None:  # type: ignore[no-untyped-def]
    base, _store, _ = console
    sign_in(page, base, "/queue?severity=low")
    order = [
        int(x)
        for x in page.locator("#case-queue tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.case)"
        )
    ]
    assert len(order) >= 4
    page.keyboard.press("?")
    assert page.locator("#kbd-help").is_visible()
    page.keyboard.press("?")
    assert not page.locator("#kbd-help").is_visible()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.locator("tr.kbd-current").get_attribute("data-case") == str(order[0])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/case/{order[0]}\?"))
    seen = []
    for expected_next in order[1:4]:
        seen.append(case_id_of(page.url))
        page.keyboard.press("v")
        page.keyboard.press("m")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf"/case/{expected_next}\?.*msg=case_verdict"))
        assert "severity=low" in page.url  # the next case is next in the same filter
    assert seen == order[:3]
    for cid in seen:
        case = page.request.get(f"{base}/api/cases/{cid}").json()["case"]
        assert case["status"] == "closed" and case["verdict"] == "misuse"
    # a assigns, u goes back to the queue, which no longer holds the closed cases.
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"msg=assigned"))
    assert page.inner_text("[data-testid=case-assignee]") == "ana"
    page.keyboard.press("u")
    page.wait_for_url(re.compile(r"/queue\?severity=low$"))
    left = page.locator("#case-queue tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.case)"
    )
    assert not set(map(int, left)) & set(seen)


def test_pages_work_without_script_and_form_errors_keep_input(browser, console) -> None:  # type: ignore[no-untyped-def]
    base, _store, _ = console
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, base)
        page.locator("#case-queue a.case-link").first.click()
        page.wait_for_url(re.compile(r"/case/\d+"))
        first = case_id_of(page.url)
        # A snooze without a reason is refused as an error, and the form keeps its input.
        page.check("#verdict-form input[value=false_positive]")
        page.fill("#verdict-form textarea[name=note]", "looks like a batch job")
        page.locator("#verdict-form input[name=snooze]").first.check()
        page.click("#verdict-submit")
        error = page.locator("#form-error")
        assert "a snooze needs a reason" in error.inner_text()
        assert error.get_attribute("role") == "alert"
        assert page.locator("p.flash").count() == 0
        assert page.is_checked("#verdict-form input[value=false_positive]")
        assert page.input_value("#verdict-form textarea[name=note]") == "looks like a batch job"
        assert page.locator("#verdict-form input[name=snooze]").first.is_checked()
        page.fill("#verdict-form input[name=snooze_reason]", "nightly batch job")
        page.click("#verdict-submit")
        page.wait_for_url(re.compile(r"msg=(case_)?verdict"))
        assert case_id_of(page.url) != first
        # A bad date in the queue filter is an error on the queue, not a dead end.
        page.goto(base + "/queue?since=yesterday")
        assert "RFC 3339" in page.inner_text("#form-error")
        assert page.locator("#case-queue tbody tr").count() > 3
    finally:
        context.close()
