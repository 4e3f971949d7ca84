"""The heavy-tail-robust series detector: online, deterministic, bounded state, and its
two robust mechanisms (bounded spread updates, per-series burstiness)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.series_robust import RobustSeriesDetector

STEP = 300.0
DAY_STEPS = int(86400 / STEP)


def feed(
    det: RobustSeriesDetector, values: np.ndarray, ts: np.ndarray | None = None, slot: int = 0
):
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    ts = np.arange(len(values)) * STEP if ts is None else ts
    return np.vstack(
        [
            det.score_learn(np.array([slot]), ts[i : i + 1], values[i : i + 1])
            for i in range(len(values))
        ]
    )


def daily(n: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / DAY_STEPS) + rng.normal(0, noise, n)


def test_no_look_ahead_each_point_is_scored_before_it_is_learnt():
    rng = np.random.default_rng(1)
    x = daily(3 * DAY_STEPS, rng)
    y = x.copy()
    y[500:] = rng.normal(500, 50, len(y) - 500)  # a wildly different future
    sx, sy = feed(RobustSeriesDetector(), x), feed(RobustSeriesDetector(), y)
    np.testing.assert_array_equal(sx[:500], sy[:500])
    # The point that changes is itself judged against the old past: a huge jump scores high.
    assert sy[500, 0] >= 0.5 and sx[500, 0] < 0.5


def test_runs_are_deterministic_and_batches_equal_single_slots():
    rng = np.random.default_rng(2)
    data = rng.lognormal(2, 0.5, (6, 400, 3))
    data[2, 300, 1] *= 25
    slots = np.array([9, 0, 4, 17, 3, 5])
    runs = []
    for _ in range(2):
        det = RobustSeriesDetector(n_metrics=3)
        out = np.zeros((6, 400, 3))
        for t in range(400):
            out[:, t] = det.score_learn(slots, np.full(6, t * STEP), data[:, t])
        runs.append(out)
    np.testing.assert_array_equal(runs[0], runs[1])
    for k in range(6):
        alone = feed(RobustSeriesDetector(n_metrics=3), data[k])
        np.testing.assert_allclose(alone, runs[0][k], rtol=0, atol=1e-12)
    assert runs[0][2, 300, 1] >= 0.5 and runs[0][2, 300, 0] < 0.5


@pytest.mark.parametrize("n_metrics", [1, 4, 8])
def test_state_is_at_most_1kb_per_series_per_metric_and_constant(n_metrics):
    det = RobustSeriesDetector(n_metrics=n_metrics)
    det.ensure_capacity(500)
    per_slot = det.state_bytes_per_slot()
    assert per_slot <= 1024 * n_metrics
    total = sum(v.nbytes for v in det.state_dict().values() if isinstance(v, np.ndarray))
    assert total == det.capacity * per_slot
    feed(det, np.random.default_rng(3).normal(5, 1, (400, n_metrics)))
    assert det.state_bytes_per_slot() == per_slot


def test_state_round_trip_and_params_rebuild_the_same_detector():
    rng = np.random.default_rng(4)
    x = daily(2 * DAY_STEPS, rng)
    a = RobustSeriesDetector(tail_p=0.02)
    feed(a, x[:300])
    b = RobustSeriesDetector(**a.params())
    assert b.params() == a.params()
    b.load_state_dict(a.state_dict())
    ts = np.arange(300, len(x)) * STEP
    np.testing.assert_array_equal(feed(a, x[300:], ts), feed(b, x[300:], ts))


def test_bounded_updates_keep_one_outlier_from_masking_the_next_incident():
    rng = np.random.default_rng(5)
    x = 100 + rng.normal(0, 2, 2000)
    x[1000] += 2000  # one absurd reading
    x[1300:1310] += 14  # a real, modest incident soon after
    # z_cap bounds what the outlier leaves in the novelty peak; clip bounds the spread.
    bounded = feed(RobustSeriesDetector(clip=6.0, z_cap=20.0), x)[:, 0]
    unbounded = feed(RobustSeriesDetector(clip=math.inf, z_cap=20.0), x)[:, 0]
    assert bounded[1000] >= 0.5 and unbounded[1000] >= 0.5
    assert bounded[1300:1310].max() >= 0.5
    assert unbounded[1300:1310].max() < bounded[1300:1310].max()


def test_usual_bursts_of_a_bursty_series_alarm_less_than_on_a_calm_one():
    # A series with a 3-step burst of 10 spreads every 300 steps (1% of its steps) learns
    # that such bursts are its normal; the same burst on a calm series stays an anomaly.
    rng = np.random.default_rng(6)
    n, at = 5000, 4650
    calm = 20 + rng.normal(0, 1, n)
    bursty = calm.copy()
    for start in [*range(100, n - 400, 300), at]:
        bursty[start : start + 3] += 10
    calm[at : at + 3] += 10
    on_calm = feed(RobustSeriesDetector(), calm)[at : at + 5, 0].max()
    on_bursty = feed(RobustSeriesDetector(), bursty)[at : at + 5, 0].max()
    off = feed(RobustSeriesDetector(tail_ref=math.inf), bursty)[at : at + 5, 0].max()
    assert on_calm >= 0.8
    assert on_bursty < off - 0.1  # the burstiness model, not only the spread, lowers it
    assert on_bursty < on_calm - 0.25


def test_gaps_and_heavy_tails_keep_scores_finite_and_in_range():
    rng = np.random.default_rng(7)
    x = 30 + rng.standard_t(1.5, 3000)  # very heavy tails
    ts = np.arange(3000) * STEP
    ts[1500:] += 10 * 3600
    sc = feed(RobustSeriesDetector(), x, ts)
    assert np.all(np.isfinite(sc)) and np.all((sc >= 0) & (sc <= 1))


def test_a_plain_detector_state_is_refused_in_one_line():
    from detectors.series import SeriesDetector

    plain = SeriesDetector()
    feed(plain, np.ones(50))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="saved by another series detector"):
        RobustSeriesDetector().load_state_dict(plain.state_dict())
