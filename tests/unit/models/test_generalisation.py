"""Mechanisms that keep detection honest on traffic Vigil was not built on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from detectors.campaign import CampaignDetector
from detectors.takeover import TakeoverDetector
from models.crosssource import Label, Truth, category_of, generator_truth, score
from streams.core.batch import FeatureBatch
from streams.core.config import FusionConfig
from streams.features.window import FEATURES
from streams.fusion.grading import STATISTICAL_CAP, certainty, graded, severity_of


def batch(**cols: list[float]) -> FeatureBatch:
    n = len(next(iter(cols.values())))
    X = np.zeros((n, len(FEATURES)))
    for name, values in cols.items():
        X[:, FEATURES.index(name)] = values
    return FeatureBatch(
        X=X,
        columns=FEATURES,
        account_ids=np.array([f"a{i}" for i in range(n)], dtype=object),
        accounts=np.arange(n, dtype=np.uint64),
        window_start=np.zeros(n),
        window_end=np.full(n, 300.0),
        plans=np.array(["free"] * n, dtype=object),
    )


def test_sharing_a_network_is_not_a_campaign() -> None:
    # A classroom: ten new free accounts on one /24 and one client, light use.
    shared = dict(
        subnet_new_accounts=[10.0, 10.0],
        ua_new_accounts=[10.0, 10.0],
        account_age_days=[0.1, 0.1],
        is_free_plan=[1.0, 1.0],
        requests=[20.0, 20.0],
        models_seen=[1.0, 1.0],
    )
    det = CampaignDetector(free_daily_tokens=250_000)
    quiet = batch(**shared, day_tokens=[20_000.0, 20_000.0], group_misuse_accounts=[0.0, 0.0])
    assert det.score(quiet).max() == 0.0
    # The same group where most members burn most of the free allowance.
    ring = batch(**shared, day_tokens=[200_000.0, 200_000.0], group_misuse_accounts=[6.0, 6.0])
    assert det.score(ring).min() >= 0.9
    ex = det.explain(ring, 0)
    assert ex.category == "free_tier_farming"
    features = {r.feature for r in ex.reasons}
    assert {"group_misuse_accounts", "day_tokens"} <= features
    assert all(r.baseline is not None for r in ex.reasons)


def test_one_misbehaving_account_does_not_make_its_group_a_campaign() -> None:
    det = CampaignDetector()
    b = batch(
        ua_new_accounts=[18.0],
        account_age_days=[0.5],
        is_free_plan=[1.0],
        requests=[30.0],
        moderation_mean=[0.4],
        group_misuse_accounts=[1.0],
    )
    assert det.score(b)[0] == 0.0


def test_a_statistical_opinion_alone_stays_at_medium() -> None:
    cfg = FusionConfig()
    sure = certainty(1.0, {"classifier": 1.0, "population": 0.9, "rules": 0.0}, 0.5)
    assert sure == STATISTICAL_CAP
    assert severity_of(graded(sure, "key_leak"), cfg) == "medium"
    # Evidence plus an independent detector agreeing may reach critical, if harmful.
    both = certainty(1.0, {"campaign": 1.0, "classifier": 0.9}, 0.5)
    assert severity_of(graded(both, "credential_stuffing"), cfg) == "critical"
    assert severity_of(graded(both, "anomaly"), cfg) != "critical"
    # Evidence alone tops out at high.
    alone = certainty(1.0, {"campaign": 1.0, "classifier": 0.0}, 0.5)
    assert severity_of(graded(alone, "key_leak"), cfg) == "high"


def test_takeover_needs_overlap_and_a_growing_share() -> None:
    det = TakeoverDetector()
    b = batch(new_country_overlap=[8.0, 8.0, 1.0], new_country_share=[0.7, 0.1, 0.9])
    s = det.score(b)
    assert s[0] > 0.8 and s[1] == 0.0 and s[2] == 0.0
    assert det.explain(b, 0).category == "key_leak"
    assert det.explain(b, 1).reasons == []


def test_score_follows_the_shared_definitions() -> None:
    truth = Truth(
        start=0.0,
        end=86_400.0,
        labels=[
            Label("m1", "ring", "inc1", 1000.0, 2000.0),
            Label("m2", "ring", "inc1", 1000.0, 2000.0),
            Label("m3", "leak", "inc2", 5000.0, 6000.0),
        ],
        benign={f"b{i}" for i in range(10)},
        hard_negatives={"cohort": [("b0", 0.0, 500.0), ("b1", 0.0, 500.0)]},
    )
    alerts = [
        ("m1", 1500.0),  # in window
        ("m3", 4000.0),  # before onset: a false positive for precision...
        ("m3", 6000.0 + 7300.0),  # ...and after end + 2 h: not a detection
        ("b0", 100.0),  # a hard negative, inside its window
    ]
    s = score(alerts, truth)
    assert s["scenarios"]["ring"]["recall"] == 0.5
    assert s["scenarios"]["ring"]["incident_recall"] == 1.0
    assert s["scenarios"]["leak"]["recall"] == 0.0
    # TP: m1, m3 (alerted after onset); FP: m3 early, b0.
    assert s["precision"] == 0.5
    assert s["benign_alerted"] == 1
    assert abs(s["fp_benign_accounts_per_1k_per_day"] - 100.0) < 1e-9
    assert s["hard_negatives"]["cohort"] == {
        "accounts": 2,
        "alerted_in_window": 1,
        "alerted_any_time": 1,
    }
    assert s["ttd_median_min"] == 500.0 / 60


def test_external_scenarios_map_to_categories() -> None:
    assert category_of("quota_farming") == "free_tier_farming"
    assert category_of("slow_drift_takeover") == "key_leak"
    assert category_of("scraping_distillation") == "distillation"
    assert category_of("something_else") is None


def test_generator_labels_name_hard_negatives(small_corpus: tuple[Path, Path]) -> None:
    _, labels = small_corpus
    truth = generator_truth(labels)
    data = orjson.loads(labels.read_bytes())["accounts"]
    kinds = {v.get("behaviour") for v in data.values() if v["label"] == "benign"}
    assert {"classroom", "org_onboarding", "hackathon"} <= kinds
    assert {"account_takeover", "quota_ring", "distillation_spread"} <= {
        lab.scenario for lab in truth.labels
    }
    assert sum(len(v) for v in truth.hard_negatives.values()) >= 30


def test_every_alert_is_checkable_and_critical_is_rare(small_corpus: tuple[Path, Path]) -> None:
    from streams.engine.engine import Engine
    from streams.replay.reader import open_input, replay

    events, _ = small_corpus
    alerts = []
    with open_input(str(events)) as fh:
        replay(Engine(), fh, sink=lambda out: alerts.extend(out.alerts))
    assert alerts
    for a in alerts:
        assert a.reasons, a
        for r in a.reasons:
            assert r.feature != "score" and r.baseline is not None and r.text
        if a.severity in ("high", "critical"):
            top = {d.name: d.score for d in a.detectors}
            # Only evidence lifts an alert past medium.
            assert max(top.get(k, 0.0) for k in ("rules", "campaign", "takeover")) >= 0.5
    assert sum(a.severity == "critical" for a in alerts) <= len(alerts) / 4
