"""`vigil eval nab`: stream a NAB-style corpus through a detector and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DETECTORS = ("series",)


def _parse_params(items: list[str] | None) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        num = float(raw)
        out[key.strip()] = int(num) if num.is_integer() and "." not in raw else num
    return out


def _default_sibling(data: Path, rel: str) -> Path | None:
    cand = Path(data).resolve().parent / rel
    return cand if cand.exists() else None


def make_detector(name: str, params: dict):
    if name == "series":
        from detectors.series import SeriesDetector

        return SeriesDetector(n_metrics=1, **params)
    raise typer.BadParameter(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


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
        detector: Annotated[str, typer.Option(help="Detector name")] = "series",
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
            score_existing(out, labels, profiles)
            return
        if data is None:
            raise typer.BadParameter("--data is required unless --score-only is given")
        labels = labels or _default_sibling(data, "labels/combined_windows.json")
        profiles = profiles or _default_sibling(data, "profiles.json")
        det = make_detector(detector, _parse_params(param))
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
        sweep_table(data, labels, profiles, factor or [0.5, 0.75, 1.5, 2.0])
