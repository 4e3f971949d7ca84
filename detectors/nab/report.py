"""Run, score and print: the work behind `vigil eval nab` and `vigil eval nab-sweep`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from detectors.nab import harness, scoring

# Parameters varied by the sweep, with how a multiplier applies to each: rates and the
# peak's per-step loss scale directly; counts are rounded.
SWEEP_PARAMS = {
    "alpha_season": "rate",
    "alpha_stats": "rate",
    "alpha_smooth": "rate",
    "peak_decay": "decay",
    "peak_weight": "scale",
    "season_bins": "count",
    "refractory": "count",
}


def scaled_param(kind: str, base: float, factor: float) -> float | int:
    if kind == "rate":
        return float(min(base * factor, 1.0))
    if kind == "decay":
        return float(1.0 - min((1.0 - base) * factor, 1.0))
    if kind == "count":
        return max(int(round(base * factor)), 1)
    return float(base * factor)


def print_results(results: list[scoring.ProfileResult], quiet_frac: float | None) -> None:
    typer.echo(f"{'profile':<20} {'score':>7} {'threshold':>10} {'TP':>4} {'FN':>4} {'FP':>5}")
    for r in results:
        typer.echo(
            f"{r.profile:<20} {r.score:7.2f} {r.threshold:10.4f} {r.tp:4d} {r.fn:4d} {r.fp:5d}"
        )
    if quiet_frac is not None:
        typer.echo(f"share of points scoring >= 0.5 in files without windows: {quiet_frac:.5f}")


def _quiet_fraction(files: list[scoring.FileLabels]) -> float | None:
    quiet = [f.scores for f in files if f.n_windows == 0]
    if not quiet:
        return None
    allq = np.concatenate(quiet)
    return float(np.mean(allq >= 0.5))


def score_series(
    series: list[harness.Series], scores: list[np.ndarray], windows: dict
) -> list[scoring.FileLabels]:
    return [
        scoring.file_labels(
            s.name, sc, scoring.window_indices(s.timestamps, windows.get(s.name, []))
        )
        for s, sc in zip(series, scores, strict=True)
    ]


def run_and_score(
    data: Path, out: Path, detector, labels: Path | None, profiles: Path | None
) -> list[scoring.ProfileResult] | None:
    series = harness.load_dir(data)
    if not series:
        raise typer.BadParameter(f"no CSV files under {data}")
    scores = harness.run_detector(series, detector)
    windows = harness.load_windows(labels) if labels else {}
    for s, sc in zip(series, scores, strict=True):
        harness.write_results(out, s, sc, harness.label_column(s, windows.get(s.name, [])))
    n_points = sum(len(s.values) for s in series)
    typer.echo(f"scored {len(series)} files, {n_points} points -> {out}")
    if not labels:
        typer.echo("no labels given: results written, not scored")
        return None
    files = score_series(series, scores, windows)
    results = scoring.score_all(files, scoring.load_profiles(profiles))
    print_results(results, _quiet_fraction(files))
    return results


def score_existing(
    out: Path, labels: Path | None, profiles: Path | None
) -> list[scoring.ProfileResult]:
    windows = harness.load_windows(labels) if labels else None
    files, missing = harness.labels_for_results(out, windows)
    for name in missing:
        typer.echo(f"skipped (no labels): {name}", err=True)
    if not files:
        raise typer.BadParameter(f"no scorable result CSVs under {out}")
    results = scoring.score_all(files, scoring.load_profiles(profiles))
    typer.echo(f"scored {len(files)} result files under {out}")
    print_results(results, _quiet_fraction(files))
    return results


def sweep_rows(
    data: Path, labels: Path, profiles: Path | None, factors: list[float]
) -> list[tuple[str, str, list[float]]]:
    """(parameter, value, [standard, low FP, low FN]) for the defaults and each variation."""
    from detectors.series import SeriesDetector

    series = harness.load_dir(data)
    windows = harness.load_windows(labels)
    profs = scoring.load_profiles(profiles)
    base = SeriesDetector().params()

    def evaluate(overrides: dict) -> list[float]:
        det = SeriesDetector(**{**base, **overrides})
        files = score_series(series, harness.run_detector(series, det), windows)
        return [r.score for r in scoring.score_all(files, profs)]

    rows = [("(defaults)", "", evaluate({}))]
    for name, kind in SWEEP_PARAMS.items():
        for f in factors:
            value = scaled_param(kind, base[name], f)
            rows.append((name, f"{value:g} (x{f:g})", evaluate({name: value})))
    return rows


def sweep_table(data: Path, labels: Path, profiles: Path | None, factors: list[float]) -> None:
    typer.echo("| parameter | value | standard | low FP | low FN |")
    typer.echo("|---|---|---|---|---|")
    for name, value, sc in sweep_rows(data, labels, profiles, factors):
        typer.echo(f"| {name} | {value} | {sc[0]:.1f} | {sc[1]:.1f} | {sc[2]:.1f} |")
