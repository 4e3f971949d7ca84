"""Batch HalfSpaceTrees scores are river's own `score_one`, row for row."""

from __future__ import annotations

import pickle
import random

import numpy as np
from river import anomaly

from detectors.hst_batch import BatchScorer, pivots

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


def test_masses_read_once_per_pivot_still_equal_score_one() -> None:
    # Batches of every size around the window, some spanning two pivots, and scoring
    # twice between some of them: the kept masses must be the model's at every call.
    rng = random.Random(11)
    model = anomaly.HalfSpaceTrees(n_trees=5, height=6, window_size=30, seed=4)
    scorer, probe, key = BatchScorer(), _rows(rng, 250), 0
    reads = 0
    for step, size in enumerate([7, 23, 1, 29, 30, 31, 61, 0, 5, 90, 2, 28]):
        key += pivots(model, size)
        for row in _rows(rng, size + 10)[:size].tolist():
            model.learn_one(dict(zip(NAMES, row, strict=True)))
        for _ in range(1 + step % 2):
            before = scorer.mass
            got = scorer.scores(model, probe, NAMES, masses_key=key)
            reads += scorer.mass is not before
            assert np.array_equal(got, _river(model, probe)), step
    assert reads < 12  # fewer reads than calls: the key kept masses between pivots


def test_pivots_counts_the_window_turns_learning_makes() -> None:
    rng = random.Random(5)
    model = anomaly.HalfSpaceTrees(n_trees=2, height=3, window_size=10, seed=1)
    for size in (3, 7, 10, 25, 1, 9):
        want = pivots(model, size)
        turned = 0
        for row in _rows(rng, 30)[:size].tolist():
            before = model.counter
            model.learn_one(dict(zip(NAMES, row, strict=True)))
            turned += model.counter < before + 1
        assert turned == want, size


def _masses(model: anomaly.HalfSpaceTrees) -> list:
    return [(n.l_mass, n.r_mass) for t in model.trees for n in t.iter_dfs()]


def test_learning_in_batches_leaves_the_model_learn_one_leaves() -> None:
    # The first batch builds the trees; later ones stop short of, end on, and run across
    # one or more pivots.
    rng = random.Random(3)
    one = anomaly.HalfSpaceTrees(n_trees=4, height=6, window_size=25, seed=8)
    many = anomaly.HalfSpaceTrees(n_trees=4, height=6, window_size=25, seed=8)
    scorer, probe = BatchScorer(), _rows(rng, 150)
    probe[:3, 1] = [0.0, 1.0, 0.5]
    for size in [1, 9, 15, 25, 3, 60, 0, 22, 26, 51, 4]:
        X = _rows(rng, size + 10)[:size]
        # Rows exactly on split points take the same branch as in river.
        splits = [n for t in one.trees for n in t.iter_dfs() if hasattr(n, "threshold")][:size]
        for i, node in enumerate(splits[::7]):
            X[i, NAMES.index(node.feature)] = node.threshold
        for row in X.tolist():
            one.learn_one(dict(zip(NAMES, row, strict=True)))
        scorer.learn(many, X, NAMES)
        assert _masses(many) == _masses(one), size
        assert (many.counter, many._first_window) == (one.counter, one._first_window)
        assert np.array_equal(scorer.scores(many, probe, NAMES), _river(one, probe))
    assert not one._first_window and any(r for _, r in _masses(one))
