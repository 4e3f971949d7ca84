"""Leave-one-category-out tuning and scoring: the work behind `vigil eval nab-cv`.

A NAB category (the first folder of a file's path) is one kind of data: cloud metrics,
ad-exchange prices, road traffic, synthetic shapes. Holding one whole category out, tuning
on the others and scoring the held-out one measures how a parameter set does on a kind of
data it was not fitted to, which is what an account's metrics are to any tuning corpus.

* Files without labelled windows only add false-positive costs; they stay in every tuning
  set (and in their own category's held-out set). A category without any window is never
  a fold of its own, since its score would be undefined.
* Tuning is a coordinate search over a small grid on the standard profile: each parameter
  in turn takes the grid value that maximises the tuning set's score with the others held,
  for a fixed number of rounds. Every parameter set is run once over all files and cached;
  slots are independent, so a subset's scores equal running the subset alone.
* A held-out category is scored two ways: with NAB's own threshold optimised on the
  held-out files (the convention behind every published NAB score) and with the threshold
  that was optimal on the tuning set (what a deployment, which cannot see labels, gets).
* The shipped defaults come from the folds, never from an in-sample score: per parameter,
  the median of the values the folds chose.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.nab import harness, scoring

Params = dict[str, Any]

# The search grid per detector: a few values per parameter, on the knobs that matter
# (learning rates, novelty, calibration, refractory) plus the robust detector's own, so a
# full run (four folds, two rounds) takes a few minutes on two cores.
GRIDS: dict[str, dict[str, list]] = {
    "series_robust": {
        "tail_p": [0.003, 0.01, 0.03],
        "tail_ref": [2.6, 3.5, 5.0, math.inf],
        "clip": [6.0, 12.0, math.inf],
        "z_cap": [20.0, 100.0, 1000.0],
        "alpha_stats": [0.00075, 0.0015, 0.003],
        "peak_weight": [0.6, 0.8, 1.0],
        "alpha_smooth": [0.2, 0.3, 0.45],
        "z_half": [0.8, 1.0, 1.2],
        "refractory": [25, 50, 100],
    },
    "series": {
        "alpha_stats": [0.00075, 0.0015, 0.003],
        "peak_weight": [0.6, 0.8, 1.0],
        "alpha_smooth": [0.2, 0.3, 0.45],
        "peak_decay": [0.992, 0.996, 0.998],
        "refractory": [25, 50, 100],
    },
}
# Where the search starts. Fixed here rather than taken from the detector's defaults,
# because those defaults are the output of this search: starting from them would let
# every category, held out or not, steer each fold. The shared knobs start at the plain
# series detector's values; the robust ones start with the burstiness model at the
# Gaussian reference and the bounds off.
STARTS: dict[str, Params] = {
    "series_robust": {
        "alpha_stats": 0.0015,
        "alpha_smooth": 0.3,
        "peak_weight": 0.8,
        "z_half": 1.2,
        "refractory": 50,
        "z_cap": 1000.0,
        "clip": math.inf,
        "tail_p": 0.01,
        "tail_ref": 2.6,
        "tail_rate": 0.01,
    },
    "series": {},
}


@dataclass
class Corpus:
    series: list[harness.Series]
    windows: dict[str, list]
    profiles: list[scoring.Profile]

    def category(self, k: int) -> str:
        name = self.series[k].name
        return name.split("/", 1)[0] if "/" in name else ""

    def has_windows(self, k: int) -> bool:
        return bool(self.windows.get(self.series[k].name))


@dataclass
class Fold:
    category: str
    train: list[int]  # file indices used for tuning
    test: list[int]  # file indices scored as held out


@dataclass
class FoldResult:
    category: str
    params: Params  # the values that differ from the starting point
    tune_score: float  # standard profile, in-sample on the tuning files
    tune_threshold: float
    held_out: list[scoring.ProfileResult]  # threshold optimised on the held-out files
    held_out_fixed: list[scoring.ProfileResult]  # threshold carried over from tuning
    n_test_files: int = 0
    n_test_windows: int = 0


@dataclass
class CvReport:
    folds: list[FoldResult]
    defaults: Params  # per-parameter median of the folds' choices
    in_sample: list[scoring.ProfileResult]  # the defaults scored on every file at once
    per_category: dict[str, list[scoring.ProfileResult]] = field(default_factory=dict)
    # Every fold's held-out files, each scored with its fold's parameters, then scored
    # together with one threshold: the closest to how a hidden set of several categories
    # is judged.
    pooled: list[scoring.ProfileResult] = field(default_factory=list)

    def mean_held_out(self, fixed: bool = False) -> list[float]:
        rows = [f.held_out_fixed if fixed else f.held_out for f in self.folds]
        return [float(np.mean([r[p].score for r in rows])) for p in range(len(rows[0]))]


def load_corpus(data: Path, labels: Path, profiles: Path | None) -> Corpus:
    series = harness.load_dir(data)
    if not series:
        raise ValueError(f"no CSV files under {data}")
    return Corpus(series, harness.load_windows(labels), scoring.load_profiles(profiles))


def plan_folds(corpus: Corpus) -> list[Fold]:
    """One fold per category that has at least one labelled window."""
    n = len(corpus.series)
    quiet = [k for k in range(n) if not corpus.has_windows(k)]
    folds = []
    for cat in sorted({corpus.category(k) for k in range(n)}):
        members = [k for k in range(n) if corpus.category(k) == cat]
        if not any(corpus.has_windows(k) for k in members):
            continue
        train = sorted({k for k in range(n) if corpus.category(k) != cat} | set(quiet))
        folds.append(Fold(cat, train, members))
    return folds


class ScoreCache:
    """Per-file NAB inputs for each parameter set, each set run over all files once."""

    def __init__(self, corpus: Corpus, make: Callable[[Params], Any], base: Params) -> None:
        self.corpus, self.make, self.base = corpus, make, dict(base)
        self._files: dict[str, list[scoring.FileLabels]] = {}

    def files(self, params: Params) -> list[scoring.FileLabels]:
        full = {**self.base, **params}
        key = json.dumps(full, sort_keys=True)
        if key not in self._files:
            scores = harness.run_detector(self.corpus.series, self.make(full))
            self._files[key] = [
                scoring.file_labels(
                    s.name,
                    sc,
                    scoring.window_indices(s.timestamps, self.corpus.windows.get(s.name, [])),
                )
                for s, sc in zip(self.corpus.series, scores, strict=True)
            ]
        return self._files[key]

    def score(
        self, params: Params, idx: Sequence[int], profiles: list[scoring.Profile]
    ) -> list[scoring.ProfileResult]:
        files = self.files(params)
        return scoring.score_all([files[k] for k in idx], profiles)

    @property
    def runs(self) -> int:
        return len(self._files)


def score_at(
    files: list[scoring.FileLabels], profile: scoring.Profile, threshold: float
) -> scoring.ProfileResult:
    """NAB score of the files at a given threshold instead of the optimal one."""
    thresholds, totals = scoring.sweep(files, profile)
    at = np.flatnonzero(thresholds >= threshold)
    raw = float(totals[at[-1]]) if len(at) else float(totals[0])
    null = scoring.null_score(files, profile)
    perfect = profile.tp * sum(f.n_windows for f in files)
    span = perfect - null
    norm = 100.0 * (raw - null) / span if span > 0 else 0.0
    tp, fn, fp = scoring.counts_at(files, threshold)
    return scoring.ProfileResult(profile.name, threshold, raw, null, perfect, norm, tp, fn, fp)


def coordinate_search(
    cache: ScoreCache, train: Sequence[int], grid: dict[str, list], rounds: int
) -> tuple[Params, scoring.ProfileResult]:
    """Best parameter set on the tuning files (standard profile), one parameter at a time."""
    standard = cache.corpus.profiles[:1]
    chosen: Params = {}
    best = cache.score(chosen, train, standard)[0]
    for _ in range(rounds):
        changed = False
        for name, values in grid.items():
            for v in values:
                trial = {**chosen, name: v}
                r = cache.score(trial, train, standard)[0]
                # Ties keep the current value, so the search settles instead of drifting.
                if r.score > best.score + 1e-9:
                    best, chosen, changed = r, trial, True
        if not changed:
            break
    return chosen, best


def consensus(choices: list[Params], base: Params, grid: dict[str, list]) -> Params:
    """Per parameter, the median of the folds' values (the starting value where a fold kept
    it), taken by rank so the result is a value the folds could pick. With an even count
    and two different middle values, the starting value wins if it lies between them,
    else the lower one: the search only moves away from the start for a gain."""
    out: Params = {}
    for name, values in grid.items():
        ladder = sorted({base[name], *values})
        ranks = sorted(ladder.index(c.get(name, base[name])) for c in choices)
        lo, hi = ranks[(len(ranks) - 1) // 2], ranks[len(ranks) // 2]
        start = ladder.index(base[name])
        out[name] = ladder[start if lo <= start <= hi else lo]
    return out


def run_cv(
    corpus: Corpus,
    make: Callable[[Params], Any],
    base: Params,
    grid: dict[str, list],
    rounds: int = 2,
    progress: Callable[[str], None] | None = None,
) -> CvReport:
    cache = ScoreCache(corpus, make, base)
    folds, pooled = [], []
    for fold in plan_folds(corpus):
        params, tuned = coordinate_search(cache, fold.train, grid, rounds)
        files = cache.files(params)
        test = [files[k] for k in fold.test]
        pooled += test
        held = scoring.score_all(test, corpus.profiles)
        fixed = [score_at(test, p, tuned.threshold) for p in corpus.profiles]
        folds.append(
            FoldResult(
                fold.category,
                params,
                tuned.score,
                tuned.threshold,
                held,
                fixed,
                len(fold.test),
                sum(f.n_windows for f in test),
            )
        )
        if progress:
            progress(
                f"fold {fold.category}: held-out standard {held[0].score:.1f} ({cache.runs} runs)"
            )
    if not folds:
        raise ValueError("no category has labelled windows; nothing to hold out")
    defaults = consensus([f.params for f in folds], base, grid)
    all_idx = list(range(len(corpus.series)))
    per_cat = {
        fold.category: cache.score(defaults, fold.test, corpus.profiles)
        for fold in plan_folds(corpus)
    }
    in_sample = cache.score(defaults, all_idx, corpus.profiles)
    return CvReport(folds, defaults, in_sample, per_cat, scoring.score_all(pooled, corpus.profiles))


def _fmt(results: list[scoring.ProfileResult]) -> str:
    return " ".join(f"{r.score:7.1f}" for r in results)


def format_report(report: CvReport) -> list[str]:
    """Plain-text table: each fold, the mean held out, and the shipped defaults in-sample."""
    head = f"{'held-out category':<24} {'files':>5} {'wins':>4} {'std':>7} {'lowFP':>7} {'lowFN':>7}  {'std@tuned thr':>13}  tuned"
    lines = [head]
    for f in report.folds:
        chosen = ", ".join(f"{k}={v:g}" for k, v in f.params.items()) or "(starting point)"
        lines.append(
            f"{f.category:<24} {f.n_test_files:>5} {f.n_test_windows:>4} {_fmt(f.held_out)}"
            f"  {f.held_out_fixed[0].score:13.1f}  {chosen} (tuning std {f.tune_score:.1f})"
        )
    mean, fixed = report.mean_held_out(), report.mean_held_out(fixed=True)
    lines.append(
        f"{'mean held out':<35} " + " ".join(f"{m:7.1f}" for m in mean) + f"  {fixed[0]:13.1f}"
    )
    lines.append(f"{'pooled held out, one threshold':<35} {_fmt(report.pooled)}")
    lines.append(
        "shipped defaults (per-parameter median of the folds' choices): "
        + ", ".join(f"{k}={v:g}" for k, v in report.defaults.items())
    )
    lines.append(f"{'defaults in-sample, all files':<35} {_fmt(report.in_sample)}")
    for cat, res in report.per_category.items():
        lines.append(f"{'  in-sample ' + cat:<35} {_fmt(res)}")
    return lines


def report_json(report: CvReport) -> dict[str, Any]:
    def res(rs: list[scoring.ProfileResult]) -> dict[str, Any]:
        return {
            r.profile: {
                "score": r.score,
                "threshold": r.threshold,
                "tp": r.tp,
                "fn": r.fn,
                "fp": r.fp,
            }
            for r in rs
        }

    return {
        "folds": [
            {
                "category": f.category,
                "files": f.n_test_files,
                "windows": f.n_test_windows,
                "params": f.params,
                "tuning_standard": f.tune_score,
                "tuning_threshold": f.tune_threshold,
                "held_out": res(f.held_out),
                "held_out_at_tuning_threshold": res(f.held_out_fixed),
            }
            for f in report.folds
        ],
        "mean_held_out": dict(zip(scoring.PROFILE_KEYS, report.mean_held_out(), strict=False)),
        "mean_held_out_at_tuning_threshold": dict(
            zip(scoring.PROFILE_KEYS, report.mean_held_out(fixed=True), strict=False)
        ),
        "pooled_held_out": res(report.pooled),
        "defaults": report.defaults,
        "defaults_in_sample": res(report.in_sample),
        "defaults_in_sample_per_category": {c: res(r) for c, r in report.per_category.items()},
    }


def run_cv_command(
    data: Path,
    labels: Path,
    profiles: Path | None,
    make: Callable[[Params], Any],
    start: Params,
    detector: str,
    rounds: int,
    out: Path | None,
    fixed: frozenset[str] = frozenset(),
) -> CvReport:
    """Load, run every fold, print the table and optionally write it (cv.txt, cv.json).

    Parameters named in `fixed` (given by the caller) keep their value and are not searched;
    the others start from STARTS[detector]."""
    import typer

    try:
        corpus = load_corpus(data, labels, profiles)
    except (OSError, ValueError, KeyError) as exc:
        raise typer.BadParameter(f"cannot read the corpus: {exc}") from None
    start = {**start, **{k: v for k, v in STARTS[detector].items() if k not in fixed}}
    grid = {k: v for k, v in GRIDS[detector].items() if k in start and k not in fixed}
    report = run_cv(corpus, make, start, grid, rounds, progress=lambda m: typer.echo(m, err=True))
    lines = format_report(report)
    for line in lines:
        typer.echo(line)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "cv.txt").write_text("\n".join(lines) + "\n")
        payload = {"detector": detector, "rounds": rounds, "grid": grid, "start": start}
        payload.update(report_json(report))
        (Path(out) / "cv.json").write_text(json.dumps(payload, indent=1) + "\n")
    return report
