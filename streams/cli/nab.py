"""`vigil eval nab`: stream a NAB-style corpus through a detector and score it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

DETECTORS = ("series_robust", "series")


def _parse_params(items: list[str] | None) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            num = float(raw)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: the value must be a number") from None
        out[key.strip()] = int(num) if num.is_integer() and "." not in raw else num
    return out


def _default_sibling(data: Path, rel: str) -> Path | None:
    cand = Path(data).resolve().parent / rel
    return cand if cand.exists() else None


def make_detector(name: str, params: dict):
    if name == "series":
        from detectors.series import SeriesDetector as cls
    elif name == "series_robust":
        from detectors.series_robust import RobustSeriesDetector as cls
    else:
        cls = None
    if cls is not None:
        try:
            return cls(**{"n_metrics": 1, **params})
        except TypeError as exc:
            raise typer.BadParameter(f"bad detector parameter: {exc}") from None
    raise typer.BadParameter(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


@contextmanager
def _readable_inputs() -> Iterator[None]:
    """A CSV, windows or profiles file that cannot be read stops the command in one line."""
    from detectors.nab.scoring import NabFileError
    from streams.cli.common import fail

    try:
        yield
    except NabFileError as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @eval_app.command("nab")
    def nab(
        data: Annotated[Path | None, typer.Option(help="Folder of input CSVs")] = None,
        out: Annotated[Path, typer.Option(help="Folder for per-file result CSVs")] = Path(
            "nab-results"
        ),
        labels: Annotated[
            Path | None, typer.Option(help="combined_windows.json (default: DATA/../labels/)")
        ] = None,
        profiles: Annotated[
            Path | None, typer.Option(help="profiles.json (default: DATA/../profiles.json)")
        ] = None,
        detector: Annotated[str, typer.Option(help="Detector name")] = "series_robust",
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="Detector parameter KEY=VALUE")
        ] = None,
        score_only: Annotated[
            bool, typer.Option("--score-only", help="Only score the CSVs already under OUT")
        ] = False,
    ) -> None:
        """Run the detector over every CSV under DATA, write OUT, print NAB scores."""
        from detectors.nab.report import run_and_score, score_existing

        if score_only:
            if labels is None and data is not None:
                labels = _default_sibling(data, "labels/combined_windows.json")
            if profiles is None and data is not None:
                profiles = _default_sibling(data, "profiles.json")
            with _readable_inputs():
                score_existing(out, labels, profiles)
            return
        if data is None:
            raise typer.BadParameter("--data is required unless --score-only is given")
        labels = labels or _default_sibling(data, "labels/combined_windows.json")
        profiles = profiles or _default_sibling(data, "profiles.json")
        det = make_detector(detector, _parse_params(param))
        with _readable_inputs():
            run_and_score(data, out, det, labels, profiles)

    @eval_app.command("nab-sweep")
    def nab_sweep(
        data: Annotated[Path, typer.Option(help="Folder of input CSVs")],
        labels: Annotated[Path | None, typer.Option(help="combined_windows.json")] = None,
        profiles: Annotated[Path | None, typer.Option(help="profiles.json")] = None,
        factor: Annotated[
            list[float] | None, typer.Option(help="Multipliers applied to each parameter")
        ] = None,
    ) -> None:
        """Score the series detector with each main parameter scaled up and down."""
        from detectors.nab.report import sweep_table

        labels = labels or _default_sibling(data, "labels/combined_windows.json")
        profiles = profiles or _default_sibling(data, "profiles.json")
        if labels is None:
            raise typer.BadParameter("--labels is required (no DATA/../labels/ found)")
        for f in factor or []:
            if not 0 < f < math.inf:  # a scale of 0, below or nan gives parameters with no meaning
                raise typer.BadParameter(f"--factor {f:g}: a multiplier must be above 0 and finite")
        with _readable_inputs():
            sweep_table(data, labels, profiles, factor or [0.5, 0.75, 1.5, 2.0])

    @eval_app.command("nab-cv")
    def nab_cv(
        data: Annotated[Path, typer.Option(help="Folder of input CSVs, one folder per category")],
        out: Annotated[
            Path | None, typer.Option(help="Write cv.json and cv.txt with every fold here")
        ] = None,
        labels: Annotated[
            Path | None, typer.Option(help="combined_windows.json (default: DATA/../labels/)")
        ] = None,
        profiles: Annotated[
            Path | None, typer.Option(help="profiles.json (default: DATA/../profiles.json)")
        ] = None,
        detector: Annotated[str, typer.Option(help="Detector name")] = "series_robust",
        rounds: Annotated[int, typer.Option(min=1, help="Coordinate-search rounds")] = 2,
        param: Annotated[
            list[str] | None,
            typer.Option("--param", "-p", help="Starting value KEY=VALUE (not searched)"),
        ] = None,
    ) -> None:
        """Leave one category out: tune on the others, score it; every fold and the mean."""
        from detectors.nab.crossval import run_cv_command

        labels = labels or _default_sibling(data, "labels/combined_windows.json")
        profiles = profiles or _default_sibling(data, "profiles.json")
        if labels is None:
            raise typer.BadParameter("--labels is required (no DATA/../labels/ found)")
        if detector not in DETECTORS:
            raise typer.BadParameter(
                f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}"
            )
        given = _parse_params(param)
        start = make_detector(detector, given).params()
        start.pop("n_metrics", None)
        with _readable_inputs():
            run_cv_command(
                data,
                labels,
                profiles,
                lambda p: make_detector(detector, p),
                start,
                detector,
                rounds,
                out,
                frozenset(given),
            )
