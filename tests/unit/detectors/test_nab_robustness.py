"""Transformed copies of a NAB corpus for the robustness check (detectors/nab/robustness.py)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.nab import crossval as cv
from detectors.nab import robustness, scoring
from detectors.series_robust import RobustSeriesDetector
from tests.unit.detectors.test_nab_crossval import write_corpus


@pytest.fixture()
def corpus(tmp_path):
    data, labels = write_corpus(tmp_path)
    return cv.load_corpus(data, labels, None)


def test_transforms_keep_times_and_windows_and_change_only_values(corpus):
    for kind in robustness.TRANSFORMS:
        out = robustness.transformed(corpus, kind)
        assert out.windows == corpus.windows
        for a, b in zip(corpus.series, out.series, strict=True):
            assert a.name == b.name
            np.testing.assert_array_equal(a.timestamps, b.timestamps)
            assert b.values.shape == a.values.shape and np.all(np.isfinite(b.values))
            assert not np.array_equal(a.values, b.values)


def test_heavier_tail_transforms_keep_the_order_of_values(corpus):
    for kind in ("scale", "square", "exp"):
        out = robustness.transformed(corpus, kind)
        for a, b in zip(corpus.series, out.series, strict=True):
            order = np.argsort(a.values, kind="stable")
            assert np.all(np.diff(b.values[order]) >= 0), kind


def test_bursts_are_upward_rare_deterministic_and_clear_of_windows(corpus):
    once = robustness.transformed(corpus, "bursts")
    again = robustness.transformed(corpus, "bursts")
    for a, b, c in zip(corpus.series, once.series, again.series, strict=True):
        np.testing.assert_array_equal(b.values, c.values)
        diff = b.values - a.values
        assert np.all(diff >= 0)
        hit = np.flatnonzero(diff > 0)
        assert 0 < len(hit) <= 0.05 * len(a.values)
        for lo, hi in scoring.window_indices(a.timestamps, corpus.windows.get(a.name, [])):
            width = hi - lo + 1
            assert not np.any((hit >= lo - width) & (hit < hi + 3 * width))


def test_unknown_transform_is_refused_in_one_line(corpus):
    with pytest.raises(ValueError, match="unknown transform 'cube'"):
        robustness.transformed(corpus, "cube")


def test_held_out_table_has_every_fold_and_pooled_for_every_transform(corpus):
    def make(p):
        return RobustSeriesDetector(**p)

    start = {"z_half": 1.2}
    rep = cv.run_cv(corpus, make, start, {"z_half": [1.0, 1.2]}, rounds=1)
    table = robustness.held_out_under_transforms(corpus, rep, make, start, ("scale", "bursts"))
    assert list(table) == ["none", "scale", "bursts"]
    for rows in table.values():
        assert list(rows) == ["alpha", "beta", "gamma", "pooled"]
        assert all(len(r) == len(corpus.profiles) for r in rows.values())
    # Untouched, the pooled row is the cross-validation's own pooled score.
    assert table["none"]["pooled"][0].score == pytest.approx(rep.pooled[0].score)
    assert len(robustness.format_table(table)) == 4
