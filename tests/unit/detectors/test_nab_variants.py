"""The measured-but-not-shipped series detector variants (detectors/nab/variants.py)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.nab import variants
from detectors.nab.variants import VariantSeriesDetector
from detectors.series_robust import RobustSeriesDetector
from tests.unit.detectors.test_nab_crossval import write_corpus
from tests.unit.detectors.test_series_robust import DAY_STEPS, daily, feed


def test_with_every_option_off_it_scores_exactly_like_the_shipped_detector():
    rng = np.random.default_rng(11)
    x = daily(3 * DAY_STEPS, rng) + 40 * (rng.random(3 * DAY_STEPS) < 0.01)
    np.testing.assert_array_equal(feed(VariantSeriesDetector(), x), feed(RobustSeriesDetector(), x))


@pytest.mark.parametrize(
    "opts",
    [
        {"box_cox": 0.0},
        {"box_cox": 0.5},
        {"season_offset": 1},
        {"cal_ref": 1.2},
        {"huber": 3.0},
        {"pareto": 4.0},
    ],
)
def test_each_option_scores_every_point_before_learning_it(opts):
    rng = np.random.default_rng(12)
    x = daily(2 * DAY_STEPS, rng)
    y = x.copy()
    y[400:] = rng.normal(900, 90, len(y) - 400)
    sx, sy = feed(VariantSeriesDetector(**opts), x), feed(VariantSeriesDetector(**opts), y)
    np.testing.assert_array_equal(sx[:400], sy[:400])
    assert np.all((sy >= 0) & (sy <= 1)) and sy[400, 0] >= 0.5


def test_log_scale_does_not_depend_on_the_units():
    rng = np.random.default_rng(13)
    x = rng.lognormal(2, 0.7, 1500)
    a = feed(VariantSeriesDetector(box_cox=0.0), x)
    b = feed(VariantSeriesDetector(box_cox=0.0), 1000.0 * x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_offset_profile_absorbs_a_level_shift_sooner():
    rng = np.random.default_rng(14)
    shift = 2 * DAY_STEPS
    x = daily(4 * DAY_STEPS, rng, noise=0.5)
    x[shift:] += 10  # a lasting shift, then a day at the new level
    offset = feed(VariantSeriesDetector(season_offset=1), x)[:, 0]
    absolute = feed(VariantSeriesDetector(), x)[:, 0]
    after = slice(shift + 30, shift + DAY_STEPS)
    # The absolute profile meets the new level slice by slice through the day after it.
    assert offset[after].sum() < absolute[after].sum() - 0.2
    assert offset[shift : shift + 3].max() >= 0.5


def test_rate_calibration_quiets_a_series_that_keeps_bursting():
    rng = np.random.default_rng(15)
    n, at = 5000, 4650
    bursty = 20 + rng.normal(0, 1, n)
    for start in range(100, n - 400, 200):
        bursty[start : start + 3] += 20 * rng.uniform(0.7, 1.3)
    calm = 20 + rng.normal(0, 1, n)
    calm[at : at + 3] += 20
    opts = {"cal_ref": 1.2, "cal_p": 0.003}
    with_cal = feed(VariantSeriesDetector(**opts), bursty)[1000:, 0]
    without = feed(VariantSeriesDetector(), bursty)[1000:, 0]
    assert np.sum(with_cal >= 0.5) < np.sum(without >= 0.5)
    assert feed(VariantSeriesDetector(**opts), calm)[at : at + 5, 0].max() >= 0.8


def test_state_round_trip_and_a_shipped_state_is_refused():
    rng = np.random.default_rng(16)
    x = daily(DAY_STEPS, rng)
    a = VariantSeriesDetector(box_cox=0.0, cal_ref=1.2)
    feed(a, x[:200])
    b = VariantSeriesDetector(**a.params())
    b.load_state_dict(a.state_dict())
    ts = np.arange(200, len(x)) * 300.0
    np.testing.assert_array_equal(feed(a, x[200:], ts), feed(b, x[200:], ts))
    shipped = RobustSeriesDetector()
    feed(shipped, x[:50])
    with pytest.raises(ValueError, match="13 rows per metric"):
        VariantSeriesDetector().load_state_dict(shipped.state_dict())


def test_command_prints_folds_and_the_robustness_table(tmp_path, capsys):
    data, _ = write_corpus(tmp_path)
    variants.main(["--data", str(data), "-p", "cal_ref=1.2", "--transforms"])
    out = capsys.readouterr().out
    assert "pooled held out, one threshold" in out
    assert "at tuning threshold, mean" in out
    for kind in ("none", "scale", "square", "exp", "bursts"):
        assert any(line.startswith(kind) for line in out.splitlines())


def test_command_refuses_a_bad_parameter_in_one_line(tmp_path):
    data, _ = write_corpus(tmp_path)
    with pytest.raises(SystemExit, match="error: .*no_such_knob"):
        variants.main(["--data", str(data), "-p", "no_such_knob=1"])


def test_burst_memory_quiets_the_later_bursts_of_a_cluster_but_not_its_first():
    # Every 700 steps a cluster of four bursts 60 steps apart: with the two largest recent
    # bursts remembered, the third and fourth of a cluster read as usual; the first of the
    # next cluster, long after, still alarms.
    rng = np.random.default_rng(8)
    x = 10 + rng.normal(0, 0.5, 5000)
    firsts, later = list(range(500, 4500, 700)), []
    for s in firsts:
        for j in range(4):
            x[s + 60 * j] += 10 * rng.uniform(0.8, 1.2)
            if j >= 2:
                later.append(s + 60 * j)
    remembered = feed(VariantSeriesDetector(tail_k=2, tail_decay=0.995), x)[:, 0]
    forgetful = feed(VariantSeriesDetector(), x)[:, 0]
    assert np.sum(forgetful[later] >= 0.5) >= len(later) // 2
    assert np.sum(remembered[later] >= 0.5) == 0
    assert np.all(remembered[firsts] >= 0.5)


def test_pareto_tail_quiets_a_heavy_tailed_series_and_leaves_a_gaussian_one_alone():
    rng = np.random.default_rng(21)
    n = 6000
    gauss = 20 + rng.normal(0, 1, n)
    heavy = 20 + rng.standard_t(1.5, n)
    np.testing.assert_array_equal(
        feed(VariantSeriesDetector(pareto=4.0), gauss), feed(VariantSeriesDetector(), gauss)
    )
    with_tail = feed(VariantSeriesDetector(pareto=4.0), heavy)[1000:, 0]
    without = feed(VariantSeriesDetector(), heavy)[1000:, 0]
    assert 0 < np.sum(with_tail >= 0.5) < np.sum(without >= 0.5)


def test_huber_spread_grows_less_on_one_wild_reading_and_still_sees_the_next_incident():
    rng = np.random.default_rng(22)
    x = 20 + rng.normal(0, 1, 3000)
    x[2000] += 500.0
    x[2700:2703] += 12.0
    rvar = 2  # row of the spread in the state
    spreads, scores = {}, {}
    # z_cap keeps the wild reading's novelty peak from masking the incident either way.
    for name, opts in (("huber", {"huber": 3.0}), ("variance", {})):
        det = VariantSeriesDetector(z_cap=20.0, **opts)
        scores[name] = feed(det, x)[:, 0]
        spreads[name] = float(np.sqrt(det._metric[0, rvar, 0]))
    assert spreads["huber"] < 0.5 * spreads["variance"]
    assert scores["huber"][2700:2705].max() >= 0.5 > scores["variance"][2700:2705].max()
