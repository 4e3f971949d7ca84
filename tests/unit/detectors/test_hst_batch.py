"""Batch HalfSpaceTrees scores are river's own `score_one`, row for row."""

from __future__ import annotations

import pickle
import random

import numpy as np
from river import anomaly

from detectors.hst_batch import BatchScorer

NAMES = ["a", "b", "c", "d"]


def _rows(rng: random.Random, n: int) -> np.ndarray:
    # Clustered rows with a few outliers, so walks stop early at many depths.
    centre = np.array([0.2, 0.7, 0.5, 0.1])
    X = np.array([[rng.gauss(0.0, 0.05) for _ in NAMES] for _ in range(n)]) + centre
    X[: n // 10] = [[rng.random() for _ in NAMES] for _ in range(n // 10)]
    return np.clip(X, 0.0, 1.0)


def _river(model: anomaly.HalfSpaceTrees, X: np.ndarray) -> np.ndarray:
    return np.array([model.score_one(dict(zip(NAMES, row, strict=True))) for row in X.tolist()])


def test_batch_scores_equal_score_one_through_many_mass_pivots() -> None:
    rng = random.Random(7)
    model = anomaly.HalfSpaceTrees(n_trees=6, height=7, window_size=40, seed=3)
    scorer = BatchScorer()
    probe = _rows(rng, 300)
    # Split points themselves, and the edges of the range, take the same branch as river.
    probe[:6, 0] = [0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    assert np.array_equal(scorer.scores(model, probe, NAMES), _river(model, probe))  # no trees
    for step in range(12):
        for row in _rows(rng, 37).tolist():
            model.learn_one(dict(zip(NAMES, row, strict=True)))
        probe[6, 0] = model.trees[0].threshold
        got, want = scorer.scores(model, probe, NAMES), _river(model, probe)
        assert np.array_equal(got, want), step
    assert len(set(want.tolist())) > 20  # the probe really reaches many different depths


def test_a_replaced_model_is_read_afresh() -> None:
    rng = random.Random(1)
    scorer, probe = BatchScorer(), _rows(rng, 200)
    for seed in (1, 2):
        model = anomaly.HalfSpaceTrees(n_trees=3, height=5, window_size=20, seed=seed)
        for row in _rows(rng, 50).tolist():
            model.learn_one(dict(zip(NAMES, row, strict=True)))
        assert np.array_equal(scorer.scores(model, probe, NAMES), _river(model, probe))
    # A model restored from a checkpoint is a new object with equal trees.
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(scorer.scores(restored, probe, NAMES), _river(model, probe))
    assert scorer.roots[0] is restored.trees[0]
