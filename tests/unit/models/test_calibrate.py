"""`vigil calibrate`'s parts: candidates recorded once reproduce real replays at any
thresholds; the greedy choice meets a reachable budget; inputs and output formats."""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from models import calibrate as cal
from models.toml_out import dumps
from streams.core.alerts import CATEGORIES
from streams.core.config import DEFAULT_RULES, FusionConfig, VigilConfig
from streams.core.config_load import config_from_dict
from streams.fusion.candidates import alerts_at, thresholds_vector


@pytest.fixture(scope="module")
def recording(small_corpus) -> cal.Recording:
    return cal.record_candidates(VigilConfig(), [str(small_corpus[0])], floor=0.3)


def _pairs(account: np.ndarray, ts: np.ndarray) -> list[tuple[str, float]]:
    return sorted(zip(account.tolist(), ts.tolist(), strict=True))


def test_recorded_candidates_reproduce_a_real_replay(small_corpus, recording) -> None:
    """The offline cooldown and thresholds give exactly the alerts fusion raises."""
    counts = Counter(CATEGORIES[c] for c in recording.cand["category"])
    top = counts.most_common(1)[0][0]
    fusion = FusionConfig(
        thresholds={top: 0.85, "anomaly": 0.4}, min_severity={"jailbreak_probing": "high"}
    )
    cfg = dataclasses.replace(VigilConfig(), fusion=fusion)
    kept = alerts_at(recording.cand, *thresholds_vector(fusion), fusion.cooldown_s)
    real, alerts = cal.verify(cfg, [str(small_corpus[0])], recording, cal.Truth())
    account = np.asarray([a.account_id for a in alerts], dtype=object)
    ts = np.asarray([cal._epoch(a.ts) for a in alerts])
    assert len(kept) and _pairs(recording.cand["account"][kept], recording.cand["ts"][kept]) == (
        _pairs(account, ts)
    )
    assert real.alerts == len(kept)


def test_the_choice_meets_a_reachable_budget_and_keeps_labelled_recall(
    small_corpus, recording
) -> None:
    truth = cal.Truth(misuse=cal.load_truth(small_corpus[1]))
    ok = cal.confirmed(recording.cand["account"], recording.cand["ts"], truth)
    base = FusionConfig()
    now = cal.simulate(recording, ok, *thresholds_vector(base), base.cooldown_s, truth)
    # Without labels every alert counts; half the current volume is within reach.
    blind = cal.Truth()
    none_ok = np.zeros_like(ok)
    all_now = cal.simulate(recording, none_ok, *thresholds_vector(base), base.cooldown_s, blind)
    budget = all_now.benign_per_1k_day / 2
    fusion, out = cal.choose(recording, blind, budget, base, 0.5)
    assert 0 < out.benign_per_1k_day <= budget
    assert set(fusion.thresholds) == set(CATEGORIES)
    assert any(t > 0.5 for t in fusion.thresholds.values())
    # With labels, a budget the current thresholds already meet changes nothing.
    same, kept = cal.choose(recording, truth, now.benign_per_1k_day + 1, base, 0.5)
    assert kept.macro_recall == now.macro_recall and set(same.thresholds.values()) == {0.5}


def test_truth_and_verdict_formats(tmp_path: Path, small_corpus) -> None:
    gen = cal.load_truth(small_corpus[1])
    assert gen and all(until == np.inf for _, _, until in gen.values())
    corpus = tmp_path / "truth.json"
    corpus.write_bytes(
        orjson.dumps(
            {"labels": [{"account_id": "a1", "scenario": "key_leak",
                         "onset": "2026-11-01T01:00:00Z", "end": "2026-11-01T02:00:00Z"}]}
        )
    )  # fmt: skip
    (scen, start, until) = cal.load_truth(corpus)["a1"]
    assert scen == "key_leak" and until - start == 3600 + cal.GRACE_S
    jl = tmp_path / "labels.jsonl"
    jl.write_text(
        '{"account_id": "a1", "verdict": "misuse"}\n{"account_id": "a1", "verdict": '
        '"false_positive"}\n{"account_id": "a2", "verdict": "false_positive"}\n'
    )
    csv = tmp_path / "labels.csv"
    csv.write_text("id,alert_id,account_id,verdict\n1,x,a3,needs_info\n")
    assert cal.load_verdicts([jl, csv]) == {
        "a1": "misuse",
        "a2": "false_positive",
        "a3": "needs_info",
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"account_id": "a1", "verdict": "maybe"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: unknown verdict 'maybe'"):
        cal.load_verdicts([bad])
    with pytest.raises(ValueError, match="neither"):
        cal.load_truth(bad)
    # Lines are counted as in the file, blank ones too; what is not JSON is named by line.
    bad.write_text('{"account_id": "a1", "verdict": "misuse"}\n\n{garbage\n')
    with pytest.raises(ValueError, match="bad.jsonl:3: not JSON"):
        cal.load_verdicts([bad])
    with pytest.raises(ValueError, match="bad.jsonl: not JSON"):
        cal.load_truth(bad)
    bad.write_text('{"accounts": {"a1": {"label": "spam_campaign"}}}')
    with pytest.raises(ValueError, match="bad.jsonl: a label without 'onset'"):
        cal.load_truth(bad)
    bad.write_text('{"labels": [7]}')
    with pytest.raises(ValueError, match="bad.jsonl: a label of the wrong shape"):
        cal.load_truth(bad)


def test_a_config_written_as_toml_reads_back_the_same() -> None:
    data = {
        "fusion": {"thresholds": {"key_leak": 0.61, "anomaly": 0.9}, "cooldown_s": 60},
        "engine": {"hash_key": 'a "quoted" key, 16+ chars'},
        "rules": [dataclasses.asdict(r) for r in DEFAULT_RULES],
        "detectors": {"baseline": {"noise_floor": [1.0, 2.0, 3.0, 4.0, 5.0]}},
    }
    data["rules"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
                     for r in data["rules"]]  # fmt: skip
    text = dumps(data)
    assert tomllib.loads(text) == data
    assert config_from_dict(tomllib.loads(text)).fusion.threshold_of("key_leak") == 0.61


def test_on_recent_traffic_earlier_alerts_still_hold_their_cooldowns(small_corpus) -> None:
    """Only the last hours count, but an alert just before the cut still suppresses a
    repeat just after it, in the recording as in the replay."""
    rec = cal.record_candidates(VigilConfig(), [str(small_corpus[0])], 0.5, recent_s=2 * 3600)
    fusion = FusionConfig(thresholds={"distillation": 0.7})
    cfg = dataclasses.replace(VigilConfig(), fusion=fusion)
    predicted = cal.at(rec, cal.Truth(), fusion)
    real, alerts = cal.verify(cfg, [str(small_corpus[0])], rec, cal.Truth())
    assert alerts and all(cal._epoch(a.ts) > rec.since for a in alerts)
    figures = ("alerts", "benign_alerts", "benign_per_1k_day", "benign_accounts_per_1k_day")
    assert [getattr(predicted, k) for k in figures] == [getattr(real, k) for k in figures]
    # Alerts within a cooldown before the cut: what the test is about.
    kept = alerts_at(rec.cand, *thresholds_vector(fusion), fusion.cooldown_s)
    before = rec.cand["ts"][kept]
    assert ((before <= rec.since) & (before > rec.since - fusion.cooldown_s)).any()
