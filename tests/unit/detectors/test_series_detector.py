"""The per-account series detector: calibration, vectorised batches, state and gaps."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.series import SeriesDetector

STEP = 300.0
DAY_STEPS = int(86400 / STEP)


def daily(n: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / DAY_STEPS) + rng.normal(0, noise, n)


def feed(det: SeriesDetector, values: np.ndarray, ts: np.ndarray | None = None, slot: int = 0):
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    ts = np.arange(len(values)) * STEP if ts is None else ts
    return np.vstack(
        [
            det.score_learn(np.array([slot]), ts[i : i + 1], values[i : i + 1])
            for i in range(len(values))
        ]
    )


def test_scores_are_in_unit_interval_and_rare_on_normal_data():
    rng = np.random.default_rng(1)
    sc = feed(SeriesDetector(), daily(6 * DAY_STEPS, rng))
    assert sc.shape == (6 * DAY_STEPS, 1)
    assert np.all((sc >= 0) & (sc <= 1))
    assert np.mean(sc >= 0.5) < 0.005


def test_a_spike_scores_high_and_fires_once():
    rng = np.random.default_rng(2)
    x = daily(4 * DAY_STEPS, rng)
    at = 3 * DAY_STEPS + 17
    x[at] += 15
    sc = feed(SeriesDetector(), x)[:, 0]
    assert sc[at] >= 0.5
    assert sc[at] == sc[2 * DAY_STEPS :].max()
    # The points right after the spike are damped rather than re-reported.
    assert np.all(sc[at + 1 : at + 30] < 0.5)


def test_a_level_shift_is_reported_near_its_start():
    rng = np.random.default_rng(3)
    x = 100 + rng.normal(0, 2, 3000)
    x[2000:] += 12
    sc = feed(SeriesDetector(), x)[:, 0]
    assert sc[2000:2010].max() >= 0.5
    assert np.mean(sc[2100:] >= 0.5) < 0.01


def test_a_missing_daily_peak_is_found_by_the_time_of_day_profile():
    # A clean daily square wave whose high phase fails to arrive on day 5.
    t = np.arange(6 * DAY_STEPS)
    x = np.where((t % DAY_STEPS) < DAY_STEPS // 2, 10.0, 40.0)
    x = x + np.random.default_rng(4).normal(0, 0.5, len(t))
    miss = slice(4 * DAY_STEPS + DAY_STEPS // 2, 4 * DAY_STEPS + DAY_STEPS // 2 + 40)
    x[miss] = 10.0
    sc = feed(SeriesDetector(), x)[:, 0]
    assert sc[miss].max() >= 0.5
    # Before it, the normal switches between phases do not alarm.
    assert sc[2 * DAY_STEPS : 4 * DAY_STEPS].max() < 0.5


def test_batch_of_many_slots_matches_feeding_each_alone():
    rng = np.random.default_rng(5)
    n_series, n_steps = 7, 400
    data = rng.lognormal(2, 0.5, (n_series, n_steps, 2))
    data[3, 300, 1] *= 20
    batch = SeriesDetector(n_metrics=2)
    slots = np.array([11, 3, 0, 25, 7, 8, 2])  # arbitrary, unordered slot ids
    out = np.zeros((n_series, n_steps, 2))
    for t in range(n_steps):
        out[:, t] = batch.score_learn(slots, np.full(n_series, t * STEP), data[:, t])
    for k in range(n_series):
        alone = feed(SeriesDetector(n_metrics=2), data[k], slot=0)
        np.testing.assert_allclose(alone, out[k], rtol=0, atol=1e-12)
    # Metrics are scored independently: the spike lights metric 1 only.
    assert out[3, 300, 1] >= 0.5 and out[3, 300, 0] < 0.5


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(6)
    x = daily(3 * DAY_STEPS, rng)
    a = SeriesDetector()
    feed(a, x[:500])
    b = SeriesDetector()
    b.load_state_dict(a.state_dict())
    ts = np.arange(500, len(x)) * STEP
    np.testing.assert_array_equal(feed(a, x[500:], ts), feed(b, x[500:], ts))


def test_slot_state_moves_between_slots_and_reset_forgets():
    rng = np.random.default_rng(7)
    x = daily(2 * DAY_STEPS, rng)
    a = SeriesDetector()
    feed(a, x[:400], slot=5)
    b = SeriesDetector()
    b.set_slot_state(0, a.get_slot_state(5))
    ts = np.arange(400, 600) * STEP
    np.testing.assert_array_equal(feed(a, x[400:600], ts, slot=5), feed(b, x[400:600], ts, slot=0))
    a.reset_slots(np.array([5]))
    np.testing.assert_array_equal(feed(a, x[:50], slot=5), feed(SeriesDetector(), x[:50], slot=0))


def test_gaps_are_measured_in_typical_steps():
    rng = np.random.default_rng(8)
    x = 20 + rng.normal(0, 1, 600)
    ts = np.arange(600) * STEP
    ts[300:] += 12 * 3600  # twelve silent hours
    det = SeriesDetector()
    sc = feed(det, x, ts)
    assert np.all(np.isfinite(sc)) and np.all((sc >= 0) & (sc <= 1))
    assert det.get_slot_state(0)["step"] == pytest.approx(STEP, rel=0.05)
    # A spike right after the gap is still reported: the gap neither masks nor inflates.
    x2 = x.copy()
    x2[300] += 15
    assert feed(SeriesDetector(), x2, ts)[300, 0] >= 0.5
    assert sc[300:].max() < 0.5


def test_memory_per_series_is_constant_and_small():
    det = SeriesDetector(n_metrics=4)
    det.ensure_capacity(1000)
    per_slot = det.state_bytes_per_slot()
    assert per_slot <= 4096
    total = sum(v.nbytes for v in det.state_dict().values() if isinstance(v, np.ndarray))
    assert total == det.capacity * per_slot
    feed(det, np.ones((300, 4)))
    assert det.state_bytes_per_slot() == per_slot


def test_params_rebuild_an_equivalent_detector():
    det = SeriesDetector(n_metrics=3, alpha_season=0.2, refractory=10)
    clone = SeriesDetector(**det.params())
    assert clone.params() == det.params()
    assert det.params()["n_metrics"] == 3


def test_absolute_floor_keeps_a_first_single_event_in_proportion():
    # A count metric that is always zero, then one event (log1p units, as the engine feeds).
    x = np.zeros(400)
    x[350] = np.log1p(1.0)
    bare = feed(SeriesDetector(), x)[:, 0]
    floored = feed(SeriesDetector(abs_floor=0.5), x)[:, 0]
    assert bare[350] >= 0.5  # unit-free: any change from a constant is extreme
    assert floored[350] < 0.5
    # A real jump still clears the floor.
    x[380] = np.log1p(200.0)
    assert feed(SeriesDetector(abs_floor=0.5), x)[380, 0] >= 0.5
