"""Every detector honours the same contract, checked the same way for each."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from detectors.base import Detector, FeatureBatch, clone
from detectors.baseline import BaselineDetector
from detectors.campaign import CampaignDetector
from detectors.classifier import ClassifierDetector
from detectors.population import PopulationDetector
from detectors.rules import RulesDetector
from detectors.takeover import TakeoverDetector
from models.dataset import window_labels
from streams.engine import Engine
from streams.replay import open_input, replay

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


def _run(det: Detector, windows, upto: int | None = None) -> np.ndarray:
    return np.concatenate([det.score_learn(b) for b, _ in windows[:upto]])


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    pos, neg = scores[y], scores[~y]
    # Probability a misuse row outscores a benign one, ties counting half.
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


@pytest.fixture(params=sorted(FACTORIES))
def make(request) -> Callable[[], Detector]:
    return FACTORIES[request.param]


def test_protocol(make) -> None:
    det = make()
    assert isinstance(det, Detector)
    assert det.name and str(det.version)


def test_scores_in_unit_interval(make, windows) -> None:
    s = _run(make(), windows)
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0


def test_auc_above_chance(make, windows) -> None:
    s = _run(make(), windows)
    y = np.concatenate([lab for _, lab in windows])
    assert y.any() and (~y).any()
    assert _auc(s, y) > 0.5


def test_seeded_determinism(make, windows) -> None:
    np.testing.assert_array_equal(_run(make(), windows, 30), _run(make(), windows, 30))


def test_pickle_round_trip(make, windows) -> None:
    det = make()
    _run(det, windows, 20)
    copy = pickle.loads(pickle.dumps(det))
    rest = windows[20:40]
    np.testing.assert_array_equal(_run(det, rest), _run(copy, rest))


def test_state_dict_round_trip(make, windows) -> None:
    det = make()
    _run(det, windows, 20)
    other = clone(det)
    other.load_state_dict(pickle.loads(pickle.dumps(det.state_dict())))
    rest = windows[20:40]
    np.testing.assert_array_equal(_run(det, rest), _run(other, rest))


def test_clone_is_fresh_with_same_params(make, windows) -> None:
    det = make()
    _run(det, windows, 20)
    fresh = clone(det)
    assert fresh.params() == det.params()
    np.testing.assert_array_equal(_run(fresh, windows, 10), _run(make(), windows, 10))


def test_score_is_pure(make, windows) -> None:
    det = make()
    _run(det, windows, 10)
    batch = windows[10][0]
    first = det.score(batch)
    np.testing.assert_array_equal(first, det.score(batch))
    np.testing.assert_array_equal(first, det.score_learn(batch))


def test_new_and_missing_features(make, windows) -> None:
    det = make()
    _run(det, windows, 10)
    batch = windows[10][0]
    keep = [c for c in batch.columns if c != "requests"]
    X = np.column_stack([batch.X[:, batch.columns.index(c)] for c in keep] + [np.ones(len(batch))])
    odd = dataclasses.replace(batch, X=X, columns=(*keep, "a_feature_from_the_future"))
    s = det.score_learn(odd)
    assert s.shape == (len(batch),) and np.all(np.isfinite(s))
    assert s.min() >= 0.0 and s.max() <= 1.0


def test_explanations_are_readable(make, windows) -> None:
    det = make()
    scores = [(det.score_learn(b), b) for b, _ in windows]
    s, batch = max(scores, key=lambda sb: float(sb[0].max()) if len(sb[0]) else -1.0)
    ex = det.explain(batch, int(np.argmax(s)))
    for r in ex.reasons:
        assert r.text and r.feature


def test_the_population_detector_scores_as_river_would(windows) -> None:
    # Its batch scorer walks river's trees with numpy (detectors/hst_batch.py).
    det = PopulationDetector(window_size=50, min_requests=1, learn_every=1)
    compared = 0
    for batch, _ in windows:
        idx, raw = det.raw_scores(batch)
        if len(raw):
            vectors = det._vectors(batch.take(idx))
            assert np.array_equal(raw, [det.model.score_one(x) for x in vectors])
            compared += len(raw)
        det.score_learn(batch)
    assert compared > 1000
