"""Every detector honours the same contract: the importable suite in detectors/checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from river import anomaly

from detectors import checks
from detectors.base import Detector
from detectors.baseline import BaselineDetector
from detectors.campaign import CampaignDetector
from detectors.classifier import ClassifierDetector
from detectors.population import _NAMES, PopulationDetector
from detectors.rules import RulesDetector
from detectors.takeover import TakeoverDetector
from models.dataset import window_labels
from streams.core.batch import FeatureBatch
from streams.engine.engine import Engine
from streams.replay.reader import open_input, replay

FACTORIES: dict[str, Callable[[], Detector]] = {
    "rules": RulesDetector,
    "baseline": BaselineDetector,
    "population": lambda: PopulationDetector(window_size=50, min_requests=1, learn_every=1),
    "campaign": CampaignDetector,
    "classifier": ClassifierDetector,
    "takeover": TakeoverDetector,
}


@pytest.fixture(scope="module")
def windows(small_corpus: tuple[Path, Path]) -> list[tuple[FeatureBatch, np.ndarray]]:
    events, labels = small_corpus
    accounts = orjson.loads(labels.read_bytes())["accounts"]
    out: list[tuple[FeatureBatch, np.ndarray]] = []
    engine = Engine(
        detectors={}, on_features=lambda b: out.append((b, window_labels(b, accounts) != "benign"))
    )
    with open_input(str(events)) as fh:
        replay(engine, fh, sink=lambda o: None)
    return out


@pytest.fixture(params=sorted(FACTORIES))
def make(request) -> Callable[[], Detector]:
    return FACTORIES[request.param]


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(make, windows, check) -> None:
    check(make, windows)


def test_the_population_detector_scores_and_learns_as_river_would(windows) -> None:
    # Its batch scorer and learner walk river's trees with numpy (detectors/hst_batch.py):
    # a twin model that learns the same rows one by one through river scores every row
    # the same.
    det = PopulationDetector(window_size=50, min_requests=1, learn_every=1)
    twin = anomaly.HalfSpaceTrees(
        n_trees=det.n_trees, height=det.height, window_size=50, seed=det.seed
    )
    compared = 0
    for batch, _ in windows:
        idx, raw = det.raw_scores(batch)
        X = det._matrix(batch.take(idx)).tolist()
        rows = [dict(zip(_NAMES, r, strict=True)) for r in X]
        if len(raw):
            assert np.array_equal(raw, [twin.score_one(x) for x in rows])
            compared += len(raw)
        det.score_learn(batch)
        for x in rows:  # learn_every=1: every active row is learnt
            twin.learn_one(x)
    assert compared > 1000


def test_a_forgotten_account_is_a_newcomer_to_its_baseline(windows) -> None:
    # The baseline keeps only per-account state: after forget() an account has no usual
    # values and scores as it would in a detector that never saw it.
    det, fresh = BaselineDetector(), BaselineDetector()
    batch = windows[20][0]
    for b, _ in windows[:20]:
        det.score_learn(b)
        fresh.score_learn(b.take(np.flatnonzero(~np.isin(b.accounts, batch.accounts))))

    def usual(d: BaselineDetector) -> np.ndarray:
        return np.array([d._usual_now(int(a)) for a in batch.accounts])

    assert np.isfinite(usual(det)).any()  # history matters...
    det.forget(batch.accounts)
    assert np.isnan(usual(det)).all()  # ...and is gone
    np.testing.assert_array_equal(usual(det), usual(fresh))
    np.testing.assert_allclose(det.score(batch), fresh.score(batch), atol=1e-12)
