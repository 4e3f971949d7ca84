"""The backtest page in headless Chromium: from the Models page to one diff."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import create_app
from console.backtests import save_backtest
from console.registry import add_version, promote
from console.store import open_store
from console.users import add_user
from streams.core.alerts import Alert
from streams.engine.shadow import Agreement
from streams.replay.backtest import Run, Traffic, diff
from tests.console_live import serve

PASSWORD = "s3cret-operator-pw"


def _alert(acct: str, end: int, cat: str, sev: str) -> Alert:
    return Alert(f"{acct}-{end}-{cat}", acct, str(end), sev, 0.8, cat, [], [], {}, "v")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("backtest-console")
    store = open_store(str(root / "vigil.db"))
    add_user(store, "olga", "viewer", PASSWORD)
    for v, parent in (("m-aaaaaaaaaaaa", None), ("m-bbbbbbbbbbbb", "m-aaaaaaaaaaaa")):
        add_version(store, v, "clf-" + v[2:], f"/reg/{v}", "olga", "test", {}, parent)
    promote(store, "m-aaaaaaaaaaaa", "olga", "baseline")
    promote(store, "m-bbbbbbbbbbbb", "olga", "beside it", "shadow")
    a = [_alert("acct_1", 1, "key_leak", "high"), _alert("acct/2", 1, "spam_campaign", "low")]
    b = [_alert("acct_1", 1, "key_leak", "high"), _alert("acct_3", 2, "distillation", "medium")]
    agreement = Agreement()
    agreement.add(a, b)
    run = Run(
        a, b, agreement, Traffic({"acct_1", "acct/2", "acct_3"}, 0.0, 86_400.0), "clf-a", "clf-b"
    )
    d = diff(run, None, {"champion": "champion", "challenger": "m-bbbb", "events": "ev.jsonl"})
    save_backtest(store, "olga", "champion", "m-bbbb", "ev.jsonl", d)
    with serve(create_app(store)) as url:
        yield url
    store.close()


def test_models_page_leads_to_the_backtest_diff(page, console, artifact_dir: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(console + "/models")
    page.fill("input[name=name]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/models$"))
    stages = page.locator("#models tbody tr").evaluate_all("rs => rs.map(r => r.dataset.stage)")
    assert sorted(stages) == ["champion", "shadow"]
    assert page.locator("#model-history tbody tr").count() == 4

    page.click("text=Backtests")
    page.wait_for_url(re.compile(r"/backtests$"))
    page.locator("#backtests a").first.click()
    page.wait_for_url(re.compile(r"/backtests/1$"))
    assert "clf-a" in page.inner_text("#backtest-title") and "clf-b" in page.inner_text(
        "#backtest-title"
    )
    no_verdicts = page.locator("#summary tbody tr td:last-child").all_inner_texts()
    assert no_verdicts == ["–", "–"]  # nothing judged: no benign rate, not a rate of zero
    assert "gained: 1" in page.inner_text("#moved") and "lost: 1" in page.inner_text("#moved")
    cats = page.locator("#by-category tbody tr td:first-child").all_inner_texts()
    assert cats == ["distillation", "key_leak", "spam_campaign"]
    changed = page.locator("#changed tbody tr a")
    assert sorted(changed.all_inner_texts()) == ["acct/2", "acct_3"]
    hrefs = changed.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert "/accounts/acct%2F2" in hrefs  # ids are quoted whole, slash included
    shots = artifact_dir / "console"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "backtest.png"), full_page=True)
