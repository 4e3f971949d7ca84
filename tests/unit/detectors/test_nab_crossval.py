"""Leave-one-category-out tuning (`vigil eval nab-cv`) on a tiny synthetic NAB layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detectors.nab import crossval as cv
from detectors.nab import scoring
from detectors.series_robust import RobustSeriesDetector

STEP = np.timedelta64(300, "s")
START = np.datetime64("2024-03-01T00:00:00")


def _stamp(t: np.datetime64) -> str:
    return str(t).replace("T", " ")


def _write(root, category: str, name: str, vals: np.ndarray, spikes: list[int], windows: dict):
    folder = root / "data" / category
    folder.mkdir(parents=True, exist_ok=True)
    ts = START + np.arange(len(vals)) * STEP
    lines = ["timestamp,value"] + [
        f"{_stamp(t)},{float(v)!r}" for t, v in zip(ts, vals, strict=True)
    ]
    (folder / name).write_text("\n".join(lines) + "\n")
    windows[f"{category}/{name}"] = [[_stamp(ts[s - 8]), _stamp(ts[s + 8])] for s in spikes]


def write_corpus(root, seed: int = 0):
    """Three categories with labelled spikes, a category without any, and one quiet file
    inside a labelled category."""
    rng = np.random.default_rng(seed)
    windows: dict[str, list] = {}
    for c, (cat, level) in enumerate((("alpha", 10.0), ("beta", 100.0), ("gamma", 1.0))):
        for f in range(2):
            vals = level + rng.normal(0, level * 0.05, 500)
            at = 300 + 40 * f + 10 * c
            vals[at] += level * 0.8
            _write(root, cat, f"s{f}.csv", vals, [at], windows)
    _write(root, "alpha", "quiet.csv", 10 + rng.normal(0, 0.5, 500), [], windows)
    _write(root, "flat", "q.csv", 5 + rng.normal(0, 0.2, 500), [], windows)
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root / "data", root / "labels" / "combined_windows.json"


@pytest.fixture()
def corpus(tmp_path):
    data, labels = write_corpus(tmp_path)
    return cv.load_corpus(data, labels, None)


def test_folds_hold_out_each_labelled_category_and_keep_quiet_files_in_tuning(corpus):
    folds = cv.plan_folds(corpus)
    assert [f.category for f in folds] == ["alpha", "beta", "gamma"]  # "flat" has no window
    names = [s.name for s in corpus.series]
    quiet = {names.index("alpha/quiet.csv"), names.index("flat/q.csv")}
    for f in folds:
        assert quiet <= set(f.train)
        held = {k for k in f.test if corpus.has_windows(k)}
        assert held and not held & set(f.train)
        assert {corpus.category(k) for k in f.test} == {f.category}


def test_score_at_the_optimal_threshold_equals_the_nab_score(corpus):
    cache = cv.ScoreCache(corpus, lambda p: RobustSeriesDetector(**p), {})
    files = cache.files({})
    for prof in corpus.profiles:
        best = scoring.score_profile(files, prof)
        again = cv.score_at(files, prof, best.threshold)
        assert again.score == pytest.approx(best.score)
        # Any other threshold can only do as well or worse.
        assert cv.score_at(files, prof, 0.999).score <= best.score + 1e-9


def test_cross_validation_reports_every_fold_and_their_mean(corpus):
    grid = {"peak_weight": [0.6, 1.0], "clip": [6.0, math.inf]}
    start = RobustSeriesDetector().params()
    rep = cv.run_cv(corpus, lambda p: RobustSeriesDetector(**p), start, grid, rounds=1)
    assert [f.category for f in rep.folds] == ["alpha", "beta", "gamma"]
    for f in rep.folds:
        assert set(f.params) <= set(grid)
        assert len(f.held_out) == len(f.held_out_fixed) == 3
        assert f.n_test_windows == 2
        # A clear spike per file: each held-out category is found well above the null.
        assert f.held_out[0].score > 50
    # Pooling the held-out files of every fold scores all six labelled windows at once.
    assert len(rep.pooled) == 3 and rep.pooled[0].tp + rep.pooled[0].fn == 6
    mean = rep.mean_held_out()
    assert mean[0] == pytest.approx(np.mean([f.held_out[0].score for f in rep.folds]))
    for name, value in rep.defaults.items():
        assert value in [start[name], *grid[name]]


def test_consensus_takes_the_median_choice_by_rank():
    grid = {"a": [1.0, 2.0, 3.0], "b": [0.1, 0.5]}
    base = {"a": 2.0, "b": 0.3}
    picks = [{"a": 1.0}, {"a": 3.0}, {"a": 3.0, "b": 0.5}]
    assert cv.consensus(picks, base, grid) == {"a": 3.0, "b": 0.3}
    # Even count, middle values 1 and 3: the starting value 2 lies between them.
    assert cv.consensus([{"a": 1.0}, {"a": 3.0}], base, grid)["a"] == 2.0
    assert cv.consensus([{"a": 1.0}, {"a": 1.0}], base, grid)["a"] == 1.0


def _cli():
    import typer

    from streams.cli.nab import register

    app, eval_app = typer.Typer(), typer.Typer()
    app.add_typer(eval_app, name="eval")
    register(app, eval_app)
    return app


def test_nab_cv_command_prints_and_writes_the_folds(tmp_path):
    from typer.testing import CliRunner

    data, _ = write_corpus(tmp_path)
    out = tmp_path / "cv"
    args = ["eval", "nab-cv", "--data", str(data), "--out", str(out), "--rounds", "1"]
    res = CliRunner().invoke(_cli(), [*args, "-p", "tail_ref=3.5"])
    assert res.exit_code == 0, res.output
    assert "mean held out" in res.output
    report = json.loads((out / "cv.json").read_text())
    assert [f["category"] for f in report["folds"]] == ["alpha", "beta", "gamma"]
    assert "tail_ref" not in report["grid"] and report["start"]["tail_ref"] == 3.5
    mean = np.mean([f["held_out"]["standard"]["score"] for f in report["folds"]])
    assert report["mean_held_out"]["standard"] == pytest.approx(mean)
    assert (out / "cv.txt").read_text().splitlines()[0].startswith("held-out category")


def test_nab_cv_command_rejects_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    data, _ = write_corpus(tmp_path)
    runner = CliRunner()
    res = runner.invoke(_cli(), ["eval", "nab-cv", "--data", str(data), "-p", "nonsense=1"])
    assert res.exit_code != 0 and "bad detector parameter" in res.output
    assert "Traceback" not in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(
        _cli(),
        [
            "eval",
            "nab-cv",
            "--data",
            str(empty),
            "--labels",
            str(tmp_path / "labels" / "combined_windows.json"),
        ],
    )
    assert res.exit_code != 0 and "no CSV files" in res.output
