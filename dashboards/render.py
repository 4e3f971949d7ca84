"""Draws the dashboards from a real Prometheus: one PNG per dashboard, in its grid layout.

Grafana cannot run everywhere Vigil does (this machine, a CI runner), but Prometheus can.
This evaluates every panel's queries over a time range through Prometheus's HTTP API, the
same queries Grafana would send, and draws them with matplotlib where the panel sits in
the dashboard's 24-column grid. Annotations (model and config changes, restarts) are drawn
as vertical lines on every time series. It also reports, per panel, whether it drew data
and whether that data moved, which is what the tests check.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

JSON_DIR = Path(__file__).resolve().parent / "json"
ROW_IN = 0.42  # inches per grid unit of height
WIDTH_IN = 20.0
MAX_LEGEND = 8


class RenderError(RuntimeError):
    """Prometheus unreachable or refusing a query; the message is one line."""


@dataclass
class Series:
    labels: dict[str, str]
    t: np.ndarray
    v: np.ndarray


@dataclass
class PanelResult:
    dashboard: str
    title: str
    kind: str
    series: int
    points: int
    moving: bool


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/{path}?{query}", timeout=self.timeout_s
            ) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except (OSError, ValueError) as exc:
            raise RenderError(f"cannot query Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise RenderError(f"Prometheus refused {params.get('query')!r}: {body.get('error')}")
        return body["data"]

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("query_range", query=expr, start=start, end=end, step=step)
        out = []
        for s in data["result"]:
            pts = np.array([(float(t), float(v)) for t, v in s["values"]], dtype=float)
            pts = pts[np.isfinite(pts[:, 1])] if len(pts) else np.empty((0, 2))
            out.append(Series(s["metric"], pts[:, 0], pts[:, 1]))
        return out

    def instant(self, expr: str, at: float) -> list[Series]:
        data = self._get("query", query=expr, time=at)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, np.array([float(t)]), np.array([float(v)]))]
        return [
            Series(s["metric"], np.array([float(s["value"][0])]), np.array([float(s["value"][1])]))
            for s in data["result"]
        ]


def variables(board: dict, rate_interval: str, job: str) -> dict[str, str]:
    """What Grafana substitutes: "All" is `.+`, text boxes their default."""
    values = {"$__rate_interval": rate_interval, "$__interval": rate_interval}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            values[f"${var['name']}"] = job if var["name"] == "job" else ".+"
        elif var["type"] == "textbox":
            values[f"${var['name']}"] = var["query"]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    # Longest names first, so `$instance` is not cut short by a shorter variable's name.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name[1:] + "}", values[name]).replace(name, values[name])
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or labels.get("__name__", "value")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def fmt_value(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if abs(value) >= 3600:
            return f"{value / 3600:.1f} h"
        if abs(value) >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.3g} s"
    suffix = " req/s" if unit == "reqps" else ""
    for bound, tag in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.3g}{tag}{suffix}"
    return f"{value:.3g}{suffix}"


def changes(board: dict, prom: Prometheus, values: dict, span: tuple[float, float, float]):
    """(name, colour, time, text) for the start of each stretch an annotation query holds."""
    marks = []
    for ann in board.get("annotations", {}).get("list", []):
        if not ann.get("expr") or not ann.get("enable", True):
            continue
        for s in prom.range(substitute(ann["expr"], values), *span):
            starts = [0] + [i for i in range(1, len(s.t)) if s.t[i] - s.t[i - 1] > 1.5 * span[2]]
            for i in starts:
                text = legend(ann.get("titleFormat", ""), s.labels) or ann["name"]
                marks.append((ann["name"], ann.get("iconColor", "grey"), float(s.t[i]), text))
    return marks


def render_board(
    board: dict,
    prom: Prometheus,
    out: Path,
    span: tuple[float, float, float],
    rate_interval: str = "1m",
    job: str = ".+",
) -> list[PanelResult]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = variables(board, rate_interval, job)
    marks = changes(board, prom, values, span)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    height = rows * ROW_IN + 1.2
    fig = plt.figure(figsize=(WIDTH_IN, height), dpi=80)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(span[1]))
    fig.suptitle(f"{board['title']}  ({_duration(span[1] - span[0])} to {when})", fontsize=15)
    results = []
    for panel in board["panels"]:
        g = panel["gridPos"]
        # Inches, then figure fractions: room on the left for the y labels, above for the title.
        left, bottom = g["x"] / 24 * WIDTH_IN + 0.75, height - 0.9 - (g["y"] + g["h"]) * ROW_IN
        rect = (left / WIDTH_IN, (bottom + 0.45) / height)
        size = ((g["w"] / 24 * WIDTH_IN - 0.95) / WIDTH_IN, (g["h"] * ROW_IN - 0.85) / height)
        results.append(_draw(fig, panel, board["title"], prom, values, span, marks, rect, size))
    _legend_for_marks(fig, marks)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    for name, _, _, text in marks:
        results.append(PanelResult(board["title"], f"{name}: {text}", "annotation", 1, 1, False))
    return results


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _draw(fig, panel, board_title, prom, values, span, marks, rect, size) -> PanelResult:  # noqa: ANN001
    kind = panel["type"]
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    if kind == "row":  # a header line across the grid, no axes
        fig.text(rect[0], rect[1] + size[1], panel["title"], fontsize=14, fontweight="bold")
        return PanelResult(board_title, panel["title"], kind, 0, 0, False)
    ax = fig.add_axes((*rect, *size))
    ax.set_title(panel["title"], fontsize=10, loc="left")
    if kind == "text":
        ax.axis("off")
        content = re.sub(
            r"[#*`\[\]]|\(http[^)]*\)", "", panel.get("options", {}).get("content", "")
        )
        ax.text(0, 1, content.strip()[:400], va="top", fontsize=8, wrap=True)
        return PanelResult(board_title, panel["title"], kind, 0, 0, False)
    targets = [(substitute(t["expr"], values), t.get("legendFormat", "")) for t in panel["targets"]]
    if kind == "timeseries":
        drawn = [(legend(fmt, s.labels), s) for e, fmt in targets for s in prom.range(e, *span)]
        return _timeseries(ax, panel, board_title, drawn, unit, marks)
    if kind == "heatmap":
        drawn = [(legend(fmt, s.labels), s) for e, fmt in targets for s in prom.range(e, *span)]
        return _heatmap(ax, panel, board_title, drawn)
    found = [(name, s) for t in panel["targets"] for name, s in _latest(t, values, prom, span)]
    ax.axis("off")
    if not found:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, color="grey")
    elif kind == "table":
        _table(ax, found)
    else:
        text = "\n".join(
            f"{fmt_value(float(s.v[0]), unit)}" + (f"  {name}" if len(found) > 1 else "")
            for name, s in found[:4]
        )
        ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=22 if len(found) == 1 else 12)
    return PanelResult(board_title, panel["title"], kind, len(found), len(found), False)


def _latest(target: dict, values: dict, prom: Prometheus, span) -> list[tuple[str, Series]]:  # noqa: ANN001
    """A stat's value as Grafana shows it: instant queries at the end, range queries by
    their last value that is a number."""
    expr, fmt = substitute(target["expr"], values), target.get("legendFormat", "")
    if target.get("instant"):
        return [(legend(fmt, s.labels), s) for s in prom.instant(expr, span[1])]
    out = []
    for s in prom.range(expr, *span):
        if len(s.v):
            out.append((legend(fmt, s.labels), Series(s.labels, s.t[-1:], s.v[-1:])))
    return out


def _timeseries(ax, panel, board_title, drawn, unit, marks) -> PanelResult:  # noqa: ANN001
    import matplotlib.dates as mdates

    shown = [(name, s) for name, s in drawn if len(s.t)]
    if not shown:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return PanelResult(board_title, panel["title"], "timeseries", 0, 0, False)
    points = sum(len(s.t) for _, s in shown)
    moving = any(bool(np.nanmax(s.v) != np.nanmin(s.v)) for _, s in shown)
    # Many series (a zero-initialised label set) would hide the few that carry values.
    plotted = shown
    if len(shown) > MAX_LEGEND:
        plotted = [(n, s) for n, s in shown if np.nanmax(np.abs(s.v)) > 0] or shown[:1]
    for name, s in plotted:
        ax.plot(s.t.astype("datetime64[s]"), s.v, label=name[:40], linewidth=1.2)
    for _, colour, t, _ in marks:
        ax.axvline(np.datetime64(int(t), "s"), color=colour, linestyle="--", linewidth=1)
    title = f"{len(plotted)} of {len(shown)} series (the rest all 0)" if plotted != shown else None
    ax.legend(
        fontsize=6 if len(plotted) > 4 else 7,
        loc="upper left",
        ncol=2 if len(plotted) > 6 else 1,
        title=title,
        title_fontsize=6,
    )
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.tick_params(labelsize=7)
    ax.yaxis.set_major_formatter(lambda v, _pos: fmt_value(v, unit))
    ax.grid(alpha=0.3)
    return PanelResult(board_title, panel["title"], "timeseries", len(shown), points, moving)


def _heatmap(ax, panel, board_title, drawn) -> PanelResult:  # noqa: ANN001
    buckets = sorted(
        ((float(s.labels.get("le", "inf")), s) for _, s in drawn if len(s.t)),
        key=lambda b: b[0],
    )
    if not buckets:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return PanelResult(board_title, panel["title"], "heatmap", 0, 0, False)
    times = np.unique(np.concatenate([s.t for _, s in buckets]))
    grid = np.zeros((len(buckets), len(times)))
    for i, (_, s) in enumerate(buckets):
        grid[i, np.searchsorted(times, s.t)] += s.v
    # Prometheus buckets are cumulative (`le`); a heatmap cell is what falls in one bucket.
    grid = np.diff(grid, axis=0, prepend=0.0).clip(min=0.0)
    from matplotlib.colors import PowerNorm

    # Like the dashboard's exponential colour scale: the lowest bucket holds most scores.
    norm = PowerNorm(gamma=0.3, vmin=0.0, vmax=max(float(grid.max()), 1e-9))
    ax.imshow(
        grid, aspect="auto", origin="lower", cmap="Oranges", norm=norm, interpolation="nearest"
    )
    ax.set_yticks(range(len(buckets)), [f"{le:g}" for le, _ in buckets], fontsize=6)
    ticks = np.linspace(0, len(times) - 1, min(6, len(times))).astype(int)
    ax.set_xticks(ticks, [time.strftime("%H:%M:%S", time.gmtime(times[i])) for i in ticks])
    ax.tick_params(labelsize=7)
    totals = grid.sum(axis=0)
    moving = bool(totals.max() != totals.min())
    return PanelResult(board_title, panel["title"], "heatmap", len(buckets), grid.size, moving)


def _table(ax, found) -> None:  # noqa: ANN001
    hidden = {"__name__", "job"}
    cols = sorted({k for _, s in found for k in s.labels} - hidden)
    cells = [[s.labels.get(c, "")[:28] for c in cols] for _, s in found[:8]]
    table = ax.table(cellText=cells, colLabels=cols, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)


def _legend_for_marks(fig, marks) -> None:  # noqa: ANN001
    if not marks:
        return
    seen: dict[str, str] = {}
    for name, colour, _, _ in marks:
        seen.setdefault(name, colour)
    text = "annotations (dashed lines): " + "   ".join(
        f"{name} ({colour}): {sum(1 for m in marks if m[0] == name)}"
        for name, colour in seen.items()
    )
    fig.text(0.01, 0.005, text, fontsize=9)


def render_all(
    prometheus_url: str,
    out_dir: Path,
    start: float,
    end: float,
    step: float,
    rate_interval: str = "1m",
    job: str = ".+",
) -> tuple[list[Path], list[PanelResult]]:
    prom = Prometheus(prometheus_url)
    prom.instant("up", end)  # fails with one line when Prometheus is not there
    paths, results = [], []
    for path in sorted(JSON_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        out = out_dir / f"{board['uid']}.png"
        results += render_board(board, prom, out, (start, end, step), rate_interval, job)
        paths.append(out)
    # What each panel drew, for tests and for a quick look without opening the images.
    report = out_dir / "panels.json"
    report.write_text(json.dumps([r.__dict__ for r in results], indent=1) + "\n")
    return paths, results
