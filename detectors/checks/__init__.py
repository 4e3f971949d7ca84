"""The detector conformance suite, importable: check a detector written anywhere.

    from detectors.checks import check_detector
    check_detector(lambda: MyDetector(), windows)

`windows` is a list of (FeatureBatch, is_misuse) pairs in event-time order, as the engine's
`on_features` hook yields them (tests/unit/detectors builds them from a generated corpus).
Each check raises AssertionError with what broke. `make` must return a fresh detector.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable

import numpy as np

from detectors.base import Detector, clone
from streams.core.batch import FeatureBatch

Windows = list[tuple[FeatureBatch, np.ndarray]]
Make = Callable[[], Detector]


def run(det: Detector, windows: Windows, upto: int | None = None) -> np.ndarray:
    return np.concatenate([det.score_learn(b) for b, _ in windows[:upto]])


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Probability that a misuse row outscores a benign one, ties counting half."""
    pos, neg = scores[y], scores[~y]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def check_protocol(make: Make, windows: Windows) -> None:
    det = make()
    assert isinstance(det, Detector), f"{type(det).__name__} lacks a protocol method"
    assert det.name and str(det.version), "a detector needs a name and a version"


def check_scores_in_unit_interval(make: Make, windows: Windows) -> None:
    s = run(make(), windows)
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0, "scores leave [0, 1]"


def check_auc_above_chance(make: Make, windows: Windows) -> None:
    s = run(make(), windows)
    y = np.concatenate([lab for _, lab in windows])
    assert y.any() and (~y).any(), "the windows need misuse and benign rows"
    assert auc(s, y) > 0.5, f"AUC {auc(s, y):.3f} is not above chance"


def check_seeded_determinism(make: Make, windows: Windows) -> None:
    np.testing.assert_array_equal(run(make(), windows, 30), run(make(), windows, 30))


def check_pickle_round_trip(make: Make, windows: Windows) -> None:
    det = make()
    run(det, windows, 20)
    copy = pickle.loads(pickle.dumps(det))
    rest = windows[20:40]
    np.testing.assert_array_equal(run(det, rest), run(copy, rest))


def check_state_dict_round_trip(make: Make, windows: Windows) -> None:
    det = make()
    run(det, windows, 20)
    other = clone(det)
    other.load_state_dict(pickle.loads(pickle.dumps(det.state_dict())))
    rest = windows[20:40]
    np.testing.assert_array_equal(run(det, rest), run(other, rest))


def check_clone_is_fresh_with_same_params(make: Make, windows: Windows) -> None:
    det = make()
    run(det, windows, 20)
    fresh = clone(det)
    assert fresh.params() == det.params()
    np.testing.assert_array_equal(run(fresh, windows, 10), run(make(), windows, 10))


def check_score_is_pure(make: Make, windows: Windows) -> None:
    det = make()
    run(det, windows, 10)
    batch = windows[10][0]
    first = det.score(batch)
    np.testing.assert_array_equal(first, det.score(batch))
    np.testing.assert_array_equal(first, det.score_learn(batch))


def check_new_and_missing_features(make: Make, windows: Windows) -> None:
    det = make()
    run(det, windows, 10)
    batch = windows[10][0]
    keep = [c for c in batch.columns if c != "requests"]
    X = np.column_stack([batch.X[:, batch.columns.index(c)] for c in keep] + [np.ones(len(batch))])
    odd = dataclasses.replace(batch, X=X, columns=(*keep, "a_feature_from_the_future"), context={})
    s = det.score_learn(odd)
    assert s.shape == (len(batch),) and np.all(np.isfinite(s))
    assert s.min() >= 0.0 and s.max() <= 1.0


def check_forget(make: Make, windows: Windows) -> None:
    """Forgetting accounts (the engine evicted them) leaves every other account's scores as
    they were, tolerates accounts never seen, and keeps the state checkpointable."""
    kept, forgot = make(), make()
    run(kept, windows, 20)
    run(forgot, windows, 20)
    batch = windows[20][0]
    gone = batch.accounts[: max(1, len(batch) // 2)]
    forgot.forget(gone)
    forgot.forget(np.array([2**63 + 12345], dtype=np.uint64))  # never seen
    others = np.flatnonzero(~np.isin(batch.accounts, gone))
    np.testing.assert_allclose(forgot.score(batch)[others], kept.score(batch)[others], atol=1e-12)
    again = clone(forgot)
    again.load_state_dict(pickle.loads(pickle.dumps(forgot.state_dict())))
    rest = windows[20:30]
    np.testing.assert_array_equal(run(forgot, rest), run(again, rest))


def check_explanations_name_their_evidence(make: Make, windows: Windows) -> None:
    """The most suspicious row, if it scores at the alert threshold (0.5) or more, gets
    reasons: a feature, a finite value, and words."""
    det = make()
    best: tuple[float, FeatureBatch, int] = (-1.0, windows[0][0], 0)
    for b, _ in windows:
        s = det.score_learn(b)
        if len(s) and float(s.max()) > best[0]:
            best = (float(s.max()), b, int(np.argmax(s)))
    score, batch, i = best
    ex = det.explain(batch, i)
    assert all(r.feature and r.text and np.isfinite(r.value) for r in ex.reasons), ex
    if score < 0.5:
        return  # nothing this detector would alert on here
    assert ex.reasons, f"no reasons for a row scored {score:.2f}"
    for r in ex.reasons:
        assert r.feature and r.text and np.isfinite(r.value), r


CHECKS: tuple[Callable[[Make, Windows], None], ...] = (
    check_protocol,
    check_scores_in_unit_interval,
    check_auc_above_chance,
    check_seeded_determinism,
    check_pickle_round_trip,
    check_state_dict_round_trip,
    check_clone_is_fresh_with_same_params,
    check_score_is_pure,
    check_new_and_missing_features,
    check_forget,
    check_explanations_name_their_evidence,
)


def check_detector(make: Make, windows: Windows) -> None:
    for check in CHECKS:
        check(make, windows)
