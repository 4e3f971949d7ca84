"""Train from verdicts end to end: verdicts on a replay's alerts, `train_from_verdicts`,
then a replay with the model directory. An analyst who calls one kind of alert a false
alarm and confirms the others gets a model that vetoes the first kind and keeps the rest,
and every alert that passes shows the gate's score."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from detectors.gate import account_key
from models.verdict_loop import replay_alerts
from models.verdict_train import train_from_verdicts
from models.verdicts import sha256
from streams.core.config import VigilConfig

REJECTED = "free_tier_farming"  # what the analysts of this test call false alarms


def _accounts(alerts, keep=lambda a: True) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        if keep(a):
            out[a.category].add(a.account_id)
    return out


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    events, _ = small_corpus
    tmp = tmp_path_factory.mktemp("verdicts")
    cfg = VigilConfig()
    shipped = replay_alerts(events, cfg)
    rows = [
        {
            "alert_id": a.alert_id,
            "account_id": a.account_id,
            "verdict": "false_positive" if a.category == REJECTED else "misuse",
            "category": "" if a.category == REJECTED else a.category,
            "window": a.window,
        }
        for a in shipped
    ]
    labels = tmp / "labels.jsonl"
    labels.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    card = train_from_verdicts([events], [labels], tmp / "model", cfg, log=lambda s: None)
    after = replay_alerts(events, cfg, str(tmp / "model"))
    return events, tmp, labels, rows, shipped, card, after


def test_the_gate_vetoes_what_analysts_rejected_and_keeps_the_rest(trained) -> None:
    _, _, _, _, shipped, card, after = trained
    before, now = _accounts(shipped), _accounts(after)
    assert len(before[REJECTED]) >= 5
    assert card["threshold"] > 0, card["heldout"]
    # At least half of the rejected accounts no longer alert with that category.
    assert len(now.get(REJECTED, set())) <= len(before[REJECTED]) / 2
    for cat, accts in before.items():
        if cat != REJECTED:  # every confirmed account still alerts
            alerted = {a.account_id for a in after}
            assert accts <= alerted, cat


def test_alerts_show_the_gate_and_the_model_version(trained) -> None:
    _, _, _, _, _, card, after = trained
    assert after
    for a in after:
        gate = [d.score for d in a.detectors if d.name == "verdict_gate"]
        assert len(gate) == 1 and gate[0] >= card["threshold"]
        assert a.model_version.endswith("+" + card["version"])


def test_card_records_lineage(trained) -> None:
    events, tmp, labels, rows, _, card, _ = trained
    td = card["training_data"]
    assert td["events"] == [{"path": str(events), "sha256": sha256(events)}]
    assert td["verdict_files"][0]["sha256"] == sha256(labels)
    n_fp = sum(r["verdict"] == "false_positive" for r in rows)
    assert sum(td["verdicts"]["false_positive"].values()) == n_fp
    assert sum(td["verdicts"]["misuse"].values()) == len(rows) - n_fp
    assert td["verdicts_on_a_window"] == len(rows)
    assert card["parent"]["version"].startswith("clf-")
    assert set(card["heldout"]["at_threshold"]) >= {"misuse", "false_positive"}
    # Accounts only ever judged false positive are listed, hashed, as cleared.
    fp = {r["account_id"] for r in rows if r["verdict"] == "false_positive"}
    mis = {r["account_id"] for r in rows if r["verdict"] == "misuse"}
    assert card["cleared_accounts"] == sorted(account_key(a) for a in fp - mis)
    assert not any(a in orjson.dumps(card).decode() for a in fp)
    saved = orjson.loads((tmp / "model" / "gate.card.json").read_bytes())
    assert saved["version"] == card["version"]
    assert card["version"] in (tmp / "model" / "MODEL_CARD.md").read_text()


def test_csv_export_without_windows_trains_the_same_gate(trained, tmp_path: Path) -> None:
    """The console's labels.csv has no window: each verdict is found by its alert id."""
    events, _, _, rows, _, card, _ = trained
    path = tmp_path / "vigil-labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "alert_id", "account_id", "verdict", "category", "note", "analyst"])
        for i, r in enumerate(rows, 1):
            w.writerow([i, r["alert_id"], r["account_id"], r["verdict"], r["category"], "", "ana"])
    again = train_from_verdicts([events], [path], tmp_path / "m", VigilConfig(), log=lambda s: None)
    assert again["training_data"]["verdicts_on_a_window"] == len(rows)
    assert again["training_data"]["windows"] == card["training_data"]["windows"]
    assert again["version"] == card["version"]


def _body(alert) -> dict:  # type: ignore[no-untyped-def]
    return {k: v for k, v in alert.to_dict().items() if k != "config_version"}


def test_verdicts_of_one_kind_give_the_parent_model(trained, tmp_path: Path) -> None:
    """No false positive judged (traffic the model already handles): no gate is fitted,
    the directory still loads and scores exactly as the parent, with its lineage."""
    events, _, _, rows, shipped, _, _ = trained
    path = tmp_path / "misuse-only.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**r, "verdict": "misuse"}) + b"\n" for r in rows[:5]))
    card = train_from_verdicts([events], [path], tmp_path / "m", VigilConfig(), log=lambda s: None)
    assert "misuse windows only" in card["inactive"]
    assert not (tmp_path / "m" / "gate.onnx").exists()
    saved = orjson.loads((tmp_path / "m" / "verdicts.card.json").read_bytes())
    assert saved["training_data"]["verdicts_on_a_window"] == 5
    assert sum(saved["training_data"]["verdicts"]["misuse"].values()) == 5
    again = replay_alerts(events, VigilConfig(), str(tmp_path / "m"))
    # The config version names the model path, so it differs; every other field is the same.
    assert [_body(a) for a in again] == [_body(a) for a in shipped]
