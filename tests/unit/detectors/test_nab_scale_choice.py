"""The per-series choice of scale (detectors/nab/scale_choice.py), measured and not shipped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.nab import scale_choice, variants
from detectors.nab.scale_choice import ScaleChoiceDetector
from detectors.series_robust import RobustSeriesDetector
from tests.unit.detectors.test_nab_crossval import write_corpus
from tests.unit.detectors.test_series_robust import DAY_STEPS, daily, feed


def test_never_switched_it_scores_exactly_like_the_shipped_detector():
    rng = np.random.default_rng(31)
    x = daily(3 * DAY_STEPS, rng) + 40 * (rng.random(3 * DAY_STEPS) < 0.01)
    np.testing.assert_array_equal(feed(ScaleChoiceDetector(), x), feed(RobustSeriesDetector(), x))


@pytest.mark.parametrize("shift", [0, 2])
def test_each_point_is_scored_before_it_is_learnt(shift):
    rng = np.random.default_rng(32)
    x = rng.lognormal(2, 0.8, 1200)
    y = x.copy()
    y[700:] = 50 * x[700:]
    opts = {"skew_on": -math.inf, "skew_shift": shift}
    sx, sy = feed(ScaleChoiceDetector(**opts), x), feed(ScaleChoiceDetector(**opts), y)
    np.testing.assert_array_equal(sx[:700], sy[:700])
    assert np.all((sy >= 0) & (sy <= 1)) and sy[700:703, 0].max() >= 0.5


def test_a_skewed_series_switches_scale_and_a_symmetric_one_does_not():
    rng = np.random.default_rng(33)
    flags = {}
    for name, x in (("skewed", rng.lognormal(0, 1.2, 2000)), ("normal", rng.normal(5, 1, 2000))):
        det = ScaleChoiceDetector(skew_on=0.5)
        feed(det, x)
        flags[name] = det._metric[0, scale_choice._FLAG, 0]
    assert flags == {"skewed": 1.0, "normal": 0.0}


def test_state_round_trip_and_a_shipped_state_is_refused():
    rng = np.random.default_rng(34)
    x = rng.lognormal(1, 1, 900)
    a = ScaleChoiceDetector(skew_on=0.5)
    feed(a, x[:500])
    b = ScaleChoiceDetector(**a.params())
    b.load_state_dict(a.state_dict())
    ts = np.arange(500, len(x)) * 300.0
    np.testing.assert_array_equal(feed(a, x[500:], ts), feed(b, x[500:], ts))
    shipped = RobustSeriesDetector()
    feed(shipped, x[:50])
    with pytest.raises(ValueError, match="scale-choice state"):
        ScaleChoiceDetector().load_state_dict(shipped.state_dict())


def test_variants_command_runs_the_scale_choice(tmp_path, capsys):
    data, _ = write_corpus(tmp_path)
    variants.main(["--data", str(data), "-p", "skew_on=0.8"])
    assert "pooled held out, one threshold" in capsys.readouterr().out


def test_the_tail_gate_picks_the_log_for_a_log_normal_series_and_not_for_a_normal_one():
    # skew_gate 1: the copy whose own surprises have the lower tail quantile is chosen.
    rng = np.random.default_rng(35)
    opts = {"skew_on": 0, "skew_gate": 1, "skew_gap": 0.5, "skew_shift": 2, "skew_floor": 0.01}
    flags = {}
    for name, x in (("skewed", rng.lognormal(0, 1.2, 6000)), ("normal", rng.normal(5, 1, 6000))):
        det = ScaleChoiceDetector(**opts)
        feed(det, x)
        flags[name] = det._metric[0, scale_choice._FLAG, 0]
    assert flags == {"skewed": 1.0, "normal": 0.0}
