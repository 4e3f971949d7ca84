"""`vigil backtest`: the diff's arithmetic on hand-made alerts, then a real run."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from console.app import create_app
from console.backtests import get_backtest
from console.store import open_store
from console.users import add_user
from models.train import ARTIFACTS
from streams.cli.main import build
from streams.core.alerts import Alert
from streams.engine.shadow import Agreement
from streams.replay.backtest import Run, Traffic, VerdictError, diff, read_verdicts
from tests.model_util import fewer_trees


def alert(acct: str, end: int, cat: str, sev: str = "medium") -> Alert:
    return Alert(f"{acct}-{end}-{cat}", acct, str(end), sev, 0.8, cat, [], [], {}, "v")  # type: ignore[arg-type]


def test_gained_lost_precision_and_benign_rate(tmp_path: Path) -> None:
    a = [
        alert("x", 1, "key_leak"),
        alert("y", 1, "spam_campaign", "high"),
        alert("z", 1, "key_leak"),
    ]
    b = [
        alert("x", 1, "key_leak"),
        alert("y", 2, "spam_campaign", "low"),
        alert("w", 3, "distillation"),
    ]
    verdicts = tmp_path / "labels.jsonl"
    verdicts.write_text(
        '{"alert_id": "x-1-key_leak", "account_id": "x", "verdict": "misuse"}\n'
        '{"alert_id": "other", "account_id": "y", "verdict": "false_positive"}\n'
        '{"alert_id": "z-1-key_leak", "account_id": "z", "verdict": "needs_info"}\n'
    )
    agreement = Agreement()
    agreement.add(a, b)
    traffic = Traffic({"x", "y", "z", "w", "v"}, 0.0, 2 * 86_400.0)  # 5 accounts, 2 days
    run = Run(a, b, agreement, traffic, "clf-a", "clf-b")
    d = diff(run, read_verdicts(verdicts), {"champion": "A", "challenger": "B", "events": "e"})
    assert (d["gained"], d["lost"]) == (2, 2)
    # x misuse, y false positive (its account's verdict), z needs_info: not judged
    assert d["champion"].items() >= {"alerts": 3, "judged": 2, "precision": 0.5}.items()
    assert d["champion"]["benign_per_1000_per_day"] == pytest.approx(1 / 5 * 1000 / 2)
    assert d["challenger"]["judged"] == 2 and d["challenger"]["precision"] == 0.5
    cats = {r["key"]: r for r in d["by_category"]}
    assert (
        cats["key_leak"].items() >= {"champion": 2, "challenger": 1, "gained": 0, "lost": 1}.items()
    )
    assert (
        cats["distillation"].items()
        >= {"champion": 0, "challenger": 1, "gained": 1, "lost": 0}.items()
    )
    assert [r["key"] for r in d["by_severity"]] == ["high", "medium", "low"]
    changed = {c["account_id"]: c for c in d["changed_accounts"]}
    assert set(changed) == {"y", "z", "w"}
    assert changed["w"]["change"] == "gained" and changed["z"]["change"] == "lost"
    assert changed["y"]["change"] == "changed" and changed["y"]["verdict"] == "false_positive"
    assert d["changed_accounts"][0]["verdict"] is not None  # judged accounts first
    assert d["agreement"][-1] == {
        "category": "all", "both": 2, "either": 4, "champion_only": 1,
        "shadow_only": 1, "agreement": 0.5,
    }  # fmt: skip


def test_a_bad_verdicts_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"account_id": "x", "verdict": "misuse"}\n{"verdict": "misuse"}\n')
    with pytest.raises(VerdictError, match="labels.jsonl:2"):
        read_verdicts(bad)
    bad.write_text('{"account_id": "x", "verdict": "maybe"}\n')
    with pytest.raises(VerdictError, match="unknown verdict 'maybe'"):
        read_verdicts(bad)


def test_backtest_run_matches_two_replays_and_opens_in_the_console(
    small_corpus, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    events = str(small_corpus[0])
    other = fewer_trees(tmp_path / "b")
    app = build()

    def vigil(*args: str) -> str:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 0, r.output
        return r.output

    alone_a, alone_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    cfg_b = tmp_path / "b.toml"
    cfg_b.write_text(f'model_path = "{other / "classifier.onnx"}"\n')
    vigil("replay", events, "--alerts", str(alone_a))
    vigil("replay", events, "--alerts", str(alone_b), "-c", str(cfg_b))
    a = {x["alert_id"]: x for x in map(orjson.loads, alone_a.read_bytes().splitlines())}
    b = {x["alert_id"]: x for x in map(orjson.loads, alone_b.read_bytes().splitlines())}
    # Verdicts as an analyst would give them on A's alerts: every other account benign.
    accounts = sorted({x["account_id"] for x in a.values()})
    fp = set(accounts[::2])
    verdicts = tmp_path / "labels.jsonl"
    verdicts.write_text(
        "".join(
            orjson.dumps(
                {"alert_id": k, "account_id": x["account_id"], "category": x["category"],
                 "window": x["window"],
                 "verdict": "false_positive" if x["account_id"] in fp else "misuse"}
            ).decode() + "\n"
            for k, x in a.items()
        )
    )  # fmt: skip
    out_json, db = tmp_path / "diff.json", tmp_path / "vigil.db"
    out = vigil(
        "backtest", events, "--champion", str(ARTIFACTS), "--challenger", str(other),
        "--verdicts", str(verdicts), "--json", str(out_json), "--store", str(db),
    )  # fmt: skip
    d = orjson.loads(out_json.read_bytes())
    assert d["champion"]["alerts"] == len(a) and d["challenger"]["alerts"] == len(b)
    assert d["gained"] == len(b.keys() - a.keys()) and d["lost"] == len(a.keys() - b.keys())
    assert d["gained"] + d["lost"] > 0
    on_fp = sum(1 for x in a.values() if x["account_id"] in fp)
    assert d["champion"]["false_positive"] == on_fp and d["champion"]["judged"] == len(a)
    assert d["champion"]["precision"] == round((len(a) - on_fp) / len(a), 4)
    t = d["traffic"]
    assert d["champion"]["benign_per_1000_per_day"] == pytest.approx(
        on_fp / t["accounts"] * 1000 / t["days"], rel=1e-3
    )
    moved = {x["account_id"] for k, x in {**a, **b}.items() if (k in a) != (k in b)}
    assert {c["account_id"] for c in d["changed_accounts"]} == moved
    assert "saved as backtest 1: /backtests/1" in out

    st = open_store(str(db))
    assert get_backtest(st, 1)["diff"] == d
    add_user(st, "vic", "viewer", "a long enough password")
    client = TestClient(create_app(st))
    r = client.post("/api/session", json={"name": "vic", "password": "a long enough password"})
    assert r.status_code == 200
    page = client.get("/backtests/1")
    assert page.status_code == 200
    assert d["challenger"]["model_version"] in page.text and f"gained: {d['gained']}" in page.text
    assert client.get("/api/backtests/1").json()["diff"] == d
    assert client.get("/backtests/2").status_code == 404
    assert "/backtests/1" in client.get("/backtests").text
    st.close()
