"""NAB scoring on small hand-made files whose scores are worked out by hand below.

Reference numbers: S(p) = 2 / (1 + exp(5 p)) - 1, so S(-1) = 0.986614, S(-0.5) = 0.848284,
S(0.5) = -0.848284; a TP at relative position p earns S(p) / S(-1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.nab import scoring
from detectors.nab.scoring import Profile

STD = Profile("standard", tp=1.0, fn=1.0, fp=0.11)
LOW_FP = Profile("reward_low_FP_rate", tp=1.0, fn=1.0, fp=0.22)
LOW_FN = Profile("reward_low_FN_rate", tp=1.0, fn=2.0, fp=0.11)

S_M1 = 0.9866142981514303  # 2 * sigmoid(5) - 1
S_MHALF = 0.8482836399575129  # 2 * sigmoid(2.5) - 1


def one_file(n: int, windows: list[tuple[int, int]], detections: dict[int, float]):
    scores = np.zeros(n)
    for i, s in detections.items():
        scores[i] = s
    return scoring.file_labels("f.csv", scores, windows)


def test_scaled_sigmoid_reference_points():
    assert float(scoring.scaled_sigmoid(-1.0)) == pytest.approx(S_M1, abs=1e-12)
    assert float(scoring.scaled_sigmoid(-0.5)) == pytest.approx(S_MHALF, abs=1e-12)
    assert float(scoring.scaled_sigmoid(0.0)) == 0.0
    assert float(scoring.scaled_sigmoid(3.0)) == -1.0
    assert float(scoring.scaled_sigmoid(0.5)) == pytest.approx(-S_MHALF, abs=1e-12)


def test_probation_is_15_percent_capped_at_750_rows():
    assert scoring.probation_length(100) == 15
    assert scoring.probation_length(1001) == 150
    assert scoring.probation_length(4033) == 604
    assert scoring.probation_length(100_000) == 750


def test_detection_on_first_window_row_is_perfect():
    # 100 rows, probation 15, window rows 40..49 (width 10); detection at row 40.
    f = one_file(100, [(40, 49)], {40: 0.9})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(1.0)
    assert (r.null, r.perfect) == (-1.0, 1.0)
    assert r.score == pytest.approx(100.0)
    assert (r.tp, r.fn, r.fp) == (1, 0, 0)


def test_mid_window_detection_earns_sigmoid_weight():
    # Row 45: p = -(49 - 45 + 1) / 10 = -0.5 -> reward S(-0.5) / S(-1) = 0.859790.
    f = one_file(100, [(40, 49)], {45: 0.9})
    r = scoring.score_profile([f], STD)
    reward = S_MHALF / S_M1
    assert r.raw == pytest.approx(reward)
    assert r.score == pytest.approx(100 * (reward + 1) / 2)


def test_only_the_earliest_detection_in_a_window_counts():
    # Rows 45 and 47 both fire; 47 scores higher but the reward is set by row 45.
    f = one_file(100, [(40, 49)], {45: 0.5, 47: 0.9})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(S_MHALF / S_M1)
    assert r.threshold == pytest.approx(0.5)


def test_false_positive_before_any_window_costs_full_fp_weight():
    # FP at row 20 (no window before it): -0.11; with the TP at row 45 the best total is
    # 0.859790 - 0.11 because both share one score.
    f = one_file(100, [(40, 49)], {20: 0.9, 45: 0.9})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(S_MHALF / S_M1 - 0.11)
    assert r.fp == 1
    r2 = scoring.score_profile([f], LOW_FP)
    assert r2.raw == pytest.approx(S_MHALF / S_M1 - 0.22)


def test_false_positive_after_a_window_is_discounted_by_distance():
    # FP at row 55: p = |49 - 55| / (10 - 1) = 2/3; S(2/3) = 2 / (1 + e^(10/3)) - 1.
    s = 2.0 / (1.0 + math.exp(10.0 / 3.0)) - 1.0
    assert s == pytest.approx(-0.931109, abs=1e-6)
    f = one_file(100, [(40, 49)], {40: 0.9, 55: 0.9})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(1.0 + 0.11 * s)
    # Three widths past the window the penalty is the full weight again.
    f = one_file(100, [(40, 49)], {40: 0.9, 80: 0.9})
    assert scoring.score_profile([f], STD).raw == pytest.approx(1.0 - 0.11)


def test_threshold_is_chosen_to_maximise_the_total():
    # The FP outscores the TP, so a threshold high enough to skip the FP also skips the
    # TP (-1, the miss). Detecting both (0.859790 - 0.11) is better than either alone.
    f = one_file(100, [(40, 49)], {20: 0.95, 45: 0.6})
    r = scoring.score_profile([f], STD)
    assert r.threshold == pytest.approx(0.6)
    assert r.raw == pytest.approx(S_MHALF / S_M1 - 0.11)
    # Ten FPs above the TP: 0.859790 - 1.1 = -0.24 still beats the miss (-1). Twenty:
    # 0.859790 - 2.2 < -1, so detecting nothing (the null score) wins.
    f = one_file(100, [(40, 49)], {**{20 + i: 0.95 for i in range(10)}, 45: 0.6})
    f2 = one_file(100, [(40, 49)], {**{20 + i: 0.95 for i in range(20)}, 45: 0.6})
    assert scoring.score_profile([f2], STD).raw == pytest.approx(-1.0)
    assert scoring.score_profile([f2], STD).score == pytest.approx(0.0)
    assert scoring.score_profile([f], STD).raw == pytest.approx(S_MHALF / S_M1 - 1.1)


def test_one_threshold_shared_across_files():
    # File A: TP at its window start scored 0.8. File B: TP at its window start scored 0.3
    # and an FP scored 0.5. Thresholds: 0.8 -> 1 - 1 = 0; 0.5 -> 1 - 1 - 0.11;
    # 0.3 -> 1 + 1 - 0.11 = 1.89 (best).
    a = one_file(100, [(40, 49)], {40: 0.8})
    b = one_file(100, [(60, 69)], {60: 0.3, 20: 0.5})
    r = scoring.score_profile([a, b], STD)
    assert r.threshold == pytest.approx(0.3)
    assert r.raw == pytest.approx(1.89)
    assert r.score == pytest.approx(100 * (1.89 + 2) / 4)


def test_low_fn_profile_doubles_the_cost_of_a_miss():
    # Two windows, one found at its start: standard = 1 - 1 = 0 -> 50;
    # low FN = 1 - 2 = -1, null -4, perfect 2 -> 100 * 3 / 6 = 50.
    f = one_file(200, [(40, 49), (100, 109)], {40: 0.9})
    assert scoring.score_profile([f], STD).score == pytest.approx(50.0)
    r = scoring.score_profile([f], LOW_FN)
    assert (r.raw, r.null, r.perfect) == pytest.approx((-1.0, -4.0, 2.0))
    assert r.score == pytest.approx(50.0)


def test_probationary_rows_are_not_scored():
    # A huge score at row 10 (inside the 15-row probation) is neither FP nor anything.
    f = one_file(100, [(40, 49)], {10: 1.0, 40: 0.5})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(1.0)
    assert r.fp == 0


def test_window_reaching_into_probation_scores_from_its_first_scored_row():
    # Window rows 10..19, probation ends at 15: the earliest scorable row is 15 with
    # p = -(19 - 15 + 1) / 10 = -0.5, so even a perfect detector earns 0.859790 there.
    f = one_file(100, [(10, 19)], {15: 0.9})
    r = scoring.score_profile([f], STD)
    assert r.raw == pytest.approx(S_MHALF / S_M1)


def test_file_without_windows_only_costs_false_positives():
    quiet = one_file(100, [], {50: 0.9, 60: 0.9})
    found = one_file(100, [(40, 49)], {40: 0.9})
    r = scoring.score_profile([quiet, found], STD)
    assert r.raw == pytest.approx(1.0 - 2 * 0.11)
    assert r.fp == 2


def test_window_indices_from_timestamps():
    start, stop = np.datetime64("2024-01-01T00:00"), np.datetime64("2024-01-01T01:00")
    ts = np.arange(start, stop, np.timedelta64(5, "m")).astype("datetime64[s]")
    w = [(np.datetime64("2024-01-01T00:10"), np.datetime64("2024-01-01T00:20"))]
    assert scoring.window_indices(ts, w) == [(2, 4)]
    # Bounds between rows snap inward; a window that holds no row is dropped.
    w = [(np.datetime64("2024-01-01T00:12"), np.datetime64("2024-01-01T00:24"))]
    assert scoring.window_indices(ts, w) == [(3, 4)]
    w = [(np.datetime64("2024-01-01T00:11"), np.datetime64("2024-01-01T00:12"))]
    assert scoring.window_indices(ts, w) == []


# ----- harness and command -----------------------------------------------------------


def _write_corpus(root, rng):
    """Two small series with one labelled spike each, NAB layout: data/, labels/."""
    import json

    data = root / "data" / "demo"
    data.mkdir(parents=True)
    windows = {}
    for name, spike_at in (("a.csv", 300), ("b.csv", 340)):
        ts = np.datetime64("2024-03-01T00:00:00") + np.arange(400) * np.timedelta64(300, "s")
        vals = 10 + rng.normal(0, 1, 400)
        vals[spike_at] += 25
        lines = ["timestamp,value"] + [
            f"{str(t).replace('T', ' ')},{float(v)!r}" for t, v in zip(ts, vals, strict=True)
        ]
        (data / name).write_text("\n".join(lines) + "\n")
        lo, hi = ts[spike_at - 10], ts[spike_at + 10]
        windows[f"demo/{name}"] = [[f"{str(lo).replace('T', ' ')}.000000", str(hi)]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root / "data", root / "labels" / "combined_windows.json"


def _cli():
    import typer

    from streams.cli.nab import register

    app, eval_app = typer.Typer(), typer.Typer()
    app.add_typer(eval_app, name="eval")
    register(app, eval_app)
    return app


def _score_lines(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in scoring.PROFILE_KEYS:
            out[parts[0]] = float(parts[1])
    return out


def test_eval_nab_writes_results_and_scores_them(tmp_path):
    from typer.testing import CliRunner

    from detectors.nab import harness

    data, labels = _write_corpus(tmp_path, np.random.default_rng(7))
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(_cli(), ["eval", "nab", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    first = _score_lines(res.output)
    assert set(first) == set(scoring.PROFILE_KEYS)
    # A clear spike in each file is found: both windows detected, score well above null.
    assert first["standard"] > 50

    rows = (out / "demo" / "a.csv").read_text().splitlines()
    assert rows[0] == "timestamp,value,anomaly_score,label"
    assert len(rows) == 401
    ts, sc, lab = harness.read_results(out / "demo" / "a.csv")
    assert lab is not None and lab.sum() == 21 and lab[290] == 1 and lab[289] == 0
    assert np.all((sc >= 0) & (sc <= 1))

    # Scoring the written folder again, from the labels file or from the label column,
    # reproduces the numbers.
    res2 = runner.invoke(
        _cli(), ["eval", "nab", "--out", str(out), "--score-only", "--labels", str(labels)]
    )
    assert res2.exit_code == 0, res2.output
    assert _score_lines(res2.output) == pytest.approx(first, abs=0.01)
    res3 = runner.invoke(_cli(), ["eval", "nab", "--out", str(out), "--score-only"])
    assert res3.exit_code == 0, res3.output
    assert _score_lines(res3.output) == pytest.approx(first, abs=0.01)


def test_results_named_with_a_detector_prefix_match_their_labels():
    from detectors.nab.harness import match_label_key

    keys = {"realTraffic/speed_6005.csv", "realTraffic/speed_t4013.csv"}
    assert match_label_key("realTraffic/numenta_speed_6005.csv", keys) == (
        "realTraffic/speed_6005.csv"
    )
    assert match_label_key("realTraffic/speed_t4013.csv", keys) == "realTraffic/speed_t4013.csv"
    assert match_label_key("other/speed_6005.csv", keys) is None


def test_lockstep_run_equals_feeding_each_file_alone(tmp_path):
    from detectors.nab import harness
    from detectors.series import SeriesDetector

    data, _ = _write_corpus(tmp_path, np.random.default_rng(3))
    series = harness.load_dir(data)
    series[1].values = series[1].values[:250]
    series[1].timestamps = series[1].timestamps[:250]
    together = harness.run_detector(series, SeriesDetector())
    for s, expect in zip(series, together, strict=True):
        det = SeriesDetector()
        secs = s.timestamps.astype("datetime64[s]").astype(np.float64)
        alone = [
            det.score_learn(np.array([0]), secs[i : i + 1], s.values[i : i + 1, None])[0, 0]
            for i in range(len(s.values))
        ]
        np.testing.assert_allclose(alone, expect, rtol=0, atol=1e-12)
