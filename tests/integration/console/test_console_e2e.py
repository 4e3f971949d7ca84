"""From generated demo data to verdicts: `vigil generate`, `vigil replay --store`, the console.

An analyst goes from the queue to a verdict on a key_leak alert and on a spam_campaign
alert; for the campaign, the account's related-accounts view lists the other accounts of
the same campaign (the generator's labels.json names each misuse account's campaign).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

from console.app import create_app
from console.labels import FileLabelPublisher, read_labels
from console.store import open_store
from console.users import add_user
from tests.console_live import serve

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "demo-analyst-pw"


# `python -m streams.cli.common` would run a second copy of the module; call main() instead.
LAUNCH = "import sys; from streams.cli.main import main; sys.argv[0] = 'vigil'; main()"


def _counts(db: Path) -> dict[str, int]:
    with open_store(str(db)) as st, st.engine.connect() as conn:
        return {
            t: conn.execute(text(f"select count(*) from {t}")).scalar_one()
            for t in ("alerts", "snapshots", "accounts", "account_links")
        }


def vigil(*args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"vigil {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def replay(out: Path, run: int) -> Path:
    alerts = out / f"alerts{run}.jsonl"
    vigil(
        "replay",
        str(out / "events.jsonl.gz"),
        "--alerts",
        str(alerts),
        "--dead-letters",
        str(out / "dead-letters.jsonl"),
        "--store",
        str(out / "vigil.db"),
    )
    return alerts


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    out = tmp_path_factory.mktemp("demo")
    db = out / "vigil.db"
    vigil("generate", "--accounts", "300", "--hours", "24", "--seed", "7", "--out", str(out))
    counts = []
    for run in (1, 2):  # the second replay of the same file must not duplicate anything
        replay(out, run)
        counts.append(_counts(db))
    truth = json.loads((out / "labels.json").read_text())["accounts"]
    store = open_store(str(db))
    add_user(store, "ana", "analyst", PASSWORD)
    labels = out / "analyst-labels.jsonl"
    with serve(create_app(store, publisher=FileLabelPublisher(labels))) as url:
        yield {
            "url": url,
            "truth": truth,
            "labels": labels,
            "store": store,
            "alert_files": [out / "alerts1.jsonl", out / "alerts2.jsonl"],
            "counts": counts,
            "out": out,
        }
    store.close()


def test_replaying_twice_stores_each_alert_once(demo: dict) -> None:
    emitted = [
        {json.loads(line)["alert_id"] for line in f.read_text().splitlines()}
        for f in demo["alert_files"]
    ]
    with demo["store"].engine.connect() as conn:
        stored = set(conn.execute(text("select alert_id from alerts")).scalars())
    assert emitted[0] and stored == emitted[0] | emitted[1]
    first, second = demo["counts"]
    assert first == second and first["snapshots"] > 0


def _verdict_from_queue(page, base: str, category: str, wanted: set[str], shots: Path) -> str:  # type: ignore[no-untyped-def]
    """Queue -> filtered queue -> alert on a `wanted` account -> account -> verdict."""
    page.goto(base + "/alerts")
    page.select_option("select[name=category]", category)
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(f"category={category}"))
    assert page.locator("table.queue tbody a.alert-link").count() > 0, f"no {category} alert"
    page.screenshot(path=str(shots / f"demo-queue-{category}.png"), full_page=True)
    accounts = page.locator("table.queue tbody td.acct").all_inner_texts()
    hits = [i for i, a in enumerate(accounts) if a in wanted]
    assert hits, f"no {category} alert on a {category} account on the first page"
    page.locator("table.queue tbody tr").nth(hits[0]).locator("a.alert-link").click()
    page.wait_for_url(re.compile(r"/alerts/"))
    alert_url = page.url
    account = page.inner_text("#account-link")
    assert page.locator("table.detectors tbody tr.over").count() >= 1
    assert page.locator("ul.reasons li").count() >= 1
    page.screenshot(path=str(shots / f"demo-alert-{category}.png"), full_page=True)
    page.click("#account-link")
    page.wait_for_url(re.compile(re.escape("/accounts/" + quote(account, safe=""))))
    chart = page.locator("svg.chart[data-series=requests]")
    assert int(chart.get_attribute("data-points")) > 1
    assert chart.locator("g.alert-marker").count() >= 1
    page.screenshot(path=str(shots / f"demo-account-{category}.png"), full_page=True)
    page.goto(alert_url)
    page.check("input[name=verdict][value=misuse]")
    page.select_option("#verdict-form select[name=category]", category)
    page.fill("#verdict-form textarea[name=note]", f"confirmed {category} from the timeline")
    page.click("#verdict-form button[type=submit]")
    page.wait_for_url(re.compile(r"msg=verdict"))
    assert "resolved" in page.inner_text("[data-testid=status]")
    return account


def test_analyst_reaches_verdicts_on_key_leak_and_campaign(  # type: ignore[no-untyped-def]
    page, demo: dict, artifact_dir: Path
) -> None:
    base, truth = demo["url"], demo["truth"]
    shots = artifact_dir / "console"
    shots.mkdir(exist_ok=True)
    page.goto(base + "/login")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/alerts"))

    by_label = {
        label: {a for a, v in truth.items() if v["label"] == label}
        for label in ("key_leak", "spam_campaign")
    }
    leak = _verdict_from_queue(page, base, "key_leak", by_label["key_leak"], shots)
    spam = _verdict_from_queue(page, base, "spam_campaign", by_label["spam_campaign"], shots)
    campaign = truth[spam]["campaign"]
    assert campaign
    members = {a for a, v in truth.items() if v["campaign"] == campaign} - {spam}
    page.goto(base + "/accounts/" + quote(spam, safe=""))
    related = set(page.locator("#related tbody tr td:first-child").all_inner_texts())
    assert members <= related, f"missing campaign members: {sorted(members - related)}"
    top = page.locator("#related tbody tr td:first-child").all_inner_texts()[: len(members)]
    assert set(top) == members  # the campaign ranks above anything else
    page.screenshot(path=str(shots / "demo-related-campaign.png"), full_page=True)

    given = {
        (lab["account_id"], lab["verdict"], lab["category"]) for lab in read_labels(demo["labels"])
    }
    assert given == {(leak, "misuse", "key_leak"), (spam, "misuse", "spam_campaign")}


def test_snoozed_false_positive_stays_quiet_on_the_next_replay(  # type: ignore[no-untyped-def]
    page, demo: dict, artifact_dir: Path
) -> None:
    base, truth = demo["url"], demo["truth"]
    first = [json.loads(line) for line in demo["alert_files"][0].read_text().splitlines()]
    # Prefer an alert on an account the generator made benign: a real false positive.
    benign = [a for a in first if truth.get(a["account_id"], {}).get("label") == "benign"]
    alert = (benign or sorted(first, key=lambda a: a["score"]))[0]
    account = alert["account_id"]
    page.goto(base + "/login")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/alerts"))
    page.goto(base + "/alerts/" + alert["alert_id"])
    page.check("input[name=verdict][value=false_positive]")
    for det in alert["detectors"]:
        page.check(f"input[name=snooze][value={det['name']}]")
    page.fill("input[name=snooze_days]", "30")
    page.fill("input[name=snooze_reason]", "internal load test, agreed with the customer")
    page.click("#verdict-form button[type=submit]")
    page.wait_for_url(re.compile(r"msg=verdict"))
    page.goto(base + "/accounts/" + quote(account, safe=""))
    assert "Snoozed:" in page.inner_text("p.snoozed")
    page.screenshot(path=str(artifact_dir / "console" / "demo-snoozed.png"), full_page=True)
    page.goto(base + "/audit")
    audit = page.inner_text("#audit")
    assert audit.count("internal load test, agreed with the customer") == len(alert["detectors"])

    again = replay(demo["out"], 3)
    replayed = [json.loads(line) for line in again.read_text().splitlines()]
    assert any(a["account_id"] == account for a in first)
    assert not any(a["account_id"] == account for a in replayed)
    others = {a["alert_id"] for a in first if a["account_id"] != account}
    assert others <= {a["alert_id"] for a in replayed}  # nobody else went quiet
