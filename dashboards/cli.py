"""`vigil dashboards render`: the dashboards as PNG images, drawn from a real Prometheus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    boards = typer.Typer(help="Dashboards without Grafana.", no_args_is_help=True)
    app.add_typer(boards, name="dashboards")

    @boards.command("render")
    def render(
        prometheus: Annotated[
            str, typer.Option(help="Prometheus base URL, e.g. http://127.0.0.1:9090")
        ],
        out: Annotated[Path, typer.Option(help="Directory for one PNG per dashboard")],
        minutes: Annotated[float, typer.Option(help="Time range: the last MINUTES")] = 30.0,
        step: Annotated[float, typer.Option(help="Seconds between points (0: range / 240)")] = 0.0,
        rate_interval: Annotated[
            str, typer.Option(help="What $__rate_interval stands for (4 scrape intervals or more)")
        ] = "1m",
        job: Annotated[str, typer.Option(help="Regex for the $job variable")] = ".+",
        end: Annotated[
            float, typer.Option(help="End of the range, Unix seconds (0: now)", show_default=False)
        ] = 0.0,
    ) -> None:
        """Evaluate every panel over the range and draw each dashboard in its grid layout."""
        from dashboards.render import RenderError, render_all
        from streams.cli.common import fail

        if not minutes > 0 or step < 0:
            raise fail("--minutes must be above 0 and --step at least 0")
        end = end or time.time()
        start = end - minutes * 60
        step = step or max(1.0, (end - start) / 240)
        try:
            paths, results = render_all(prometheus, out, start, end, step, rate_interval, job)
        except RenderError as exc:
            raise fail(str(exc)) from None
        panels = [r for r in results if r.kind not in ("row", "text", "annotation")]
        empty = [r.title for r in panels if r.series == 0]
        for path in paths:
            typer.echo(f"wrote {path}")
        typer.echo(
            f"{len(panels) - len(empty)} of {len(panels)} panels drew data"
            + (f"; no data: {', '.join(empty)}" if empty else "")
            + f"; details in {out / 'panels.json'}"
        )
