"""Time axes for the console's SVG charts: nice ticks, the range selector, shared axes.

Everything here returns plain data or escaped SVG; no script is involved.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from markupsafe import Markup, escape
from sqlalchemy import select

from console.schema import snapshots
from console.store import AlertStore

RANGES = {"6h": 6 * 3600.0, "24h": 86_400.0, "7d": 7 * 86_400.0, "all": None}
RANGE_LABELS = {"6h": "last 6 h", "24h": "last 24 h", "7d": "last 7 d", "all": "all"}
# Tick steps to choose from, so that a chart gets about five to eight labelled ticks.
STEPS = (
    300,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
)
PALETTE = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f", "#a21caf")
SEVERITY_COLOURS = {"low": "#6b7280", "medium": "#d97706", "high": "#dc2626", "critical": "#7f1d1d"}


def parse_range(value: str) -> str:
    return value if value in RANGES else "all"


def cut(xs: list[float], rng: str) -> float | None:
    """The first time to show for a range, counted back from the latest window."""
    span = RANGES.get(rng)
    if span is None or not xs:
        return None
    return max(xs) - span


def time_ticks(x0: float, x1: float, want: int = 6) -> list[tuple[float, str]]:
    """Ticks on round times between x0 and x1, labelled HH:MM, or MM-DD at midnight."""
    span = max(x1 - x0, 1.0)
    step = next((s for s in STEPS if span / s <= want), STEPS[-1])
    first = (x0 // step + (1 if x0 % step else 0)) * step
    out = []
    t = first
    while t <= x1:
        d = datetime.fromtimestamp(t, tz=UTC)
        label = (
            d.strftime("%m-%d")
            if (d.hour, d.minute) == (0, 0) or step >= 86_400
            else d.strftime("%H:%M")
        )
        out.append((t, label))
        t += step
    return out


def fmt_value(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if v == int(v) else f"{v:.2f}"


def nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** len(str(int(v))) / 10 if v >= 1 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return float(m * exp)
    return float(10 * exp)


def axes_svg(
    x0: float, x1: float, ymax: float, left: float, top: float, pw: float, ph: float
) -> list[str]:
    """Gridlines and labels for both axes of a plot area."""
    parts = []
    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" class="tick">'
            f"{fmt_value(ymax * frac)}</text>"
        )
    for t, label in time_ticks(x0, x1):
        x = left + (t - x0) / max(x1 - x0, 1.0) * pw
        # A label at either edge is anchored inside so it is not cut off.
        anchor = "end" if x > left + pw - 16 else "start" if x < left + 16 else "middle"
        parts.append(
            f'<line class="xtick" x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}"/>'
            f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="{anchor}" class="tick">{label}</text>'
        )
    return parts


def member_series(
    store: AlertStore, accounts: list[str], feature: str, since: float | None, cap: int = 12
) -> dict[str, tuple[list[float], list[float]]]:
    """One feature per window for several accounts, for a chart on one shared axis."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    q = select(snapshots.c.account_id, snapshots.c.window_start, snapshots.c.features).where(
        snapshots.c.account_id.in_(accounts[:cap])
    )
    if since is not None:
        q = q.where(snapshots.c.window_start >= since)
    with store.engine.connect() as conn:
        for acct, start, feats in conn.execute(q.order_by(snapshots.c.window_start)):
            xs, ys = out.setdefault(acct, ([], []))
            xs.append(start)
            ys.append(float(json.loads(feats).get(feature) or 0.0))
    return out


def shared_axis_chart(
    title: str,
    series: dict[str, tuple[list[float], list[float]]],
    markers: list[tuple[float, str, str, str]],
    onset: float | None,
    width: int = 900,
    height: int = 220,
) -> Markup:
    """Several accounts' activity on one time axis; markers are (time, severity, account, label)."""
    left, right, top, bottom = 52, 150, 34, 24
    pw, ph = width - left - right, height - top - bottom
    # Alerts widen the axis too, so none falls outside it for lack of snapshots.
    xs_all = [x for xs, _ in series.values() for x in xs] + [m[0] for m in markers if series]
    parts = [
        f'<svg class="chart shared" data-series-count="{len(series)}" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="13" class="chart-title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f9fafb" stroke="#e5e7eb"/>',
    ]
    if not xs_all:
        parts.append(
            f'<text x="{left + 8}" y="{top + ph / 2}" class="chart-empty">no activity in this range</text></svg>'
        )
        return Markup("".join(parts))
    x0, x1 = min(xs_all), max(xs_all)
    x1 = x1 if x1 > x0 else x0 + 1
    ymax = nice_max(max((max(ys) for _, ys in series.values() if ys), default=1.0))

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - y / ymax * ph

    parts += axes_svg(x0, x1, ymax, left, top, pw, ph)
    if onset is not None and x0 <= onset <= x1:
        parts.append(onset_svg(px(onset), top, ph, left + pw))
    for i, (acct, (xs, ys)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(
            f'<polyline class="member" data-account="{escape(acct)}" points="{pts}" fill="none" '
            f'stroke="{colour}" stroke-width="1.6"><title>{escape(acct)}</title></polyline>'
        )
        label = acct if len(acct) <= 20 else acct[:19] + "…"
        ly = top + 10 + i * 14
        parts.append(
            f'<line x1="{left + pw + 10}" x2="{left + pw + 24}" y1="{ly - 3}" y2="{ly - 3}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<text x="{left + pw + 28}" y="{ly}" class="legend">{escape(label)}</text>'
        )
    for when, severity, _acct, label in markers:
        if x0 <= when <= x1:
            parts.append(marker_svg(px(when), top, ph, severity, label))
    parts.append("</svg>")
    return Markup("".join(parts))


def onset_svg(ox: float, top: float, ph: float, right_edge: float) -> str:
    """The onset as a shaded span to the right edge, a dashed line and a label."""
    anchor = "end" if ox > right_edge - 50 else "start"
    tx = ox - 4 if anchor == "end" else ox + 4
    return (
        f'<rect class="onset-span" x="{ox:.1f}" y="{top}" width="{max(0.0, right_edge - ox):.1f}" '
        f'height="{ph}" fill="#fed7aa" opacity="0.35"/>'
        f'<line class="onset" x1="{ox:.1f}" x2="{ox:.1f}" y1="{top}" y2="{top + ph}" '
        f'stroke="#ea580c" stroke-width="2.5" stroke-dasharray="5 3"/>'
        f'<text x="{tx:.1f}" y="{top + 12}" text-anchor="{anchor}" class="onset-label">onset</text>'
    )


def marker_svg(mx: float, top: float, ph: float, severity: str, label: str) -> str:
    """An alert: a severity-coloured triangle above the plot and a thin line through it."""
    colour = SEVERITY_COLOURS.get(severity, "#dc2626")
    return (
        f'<g class="alert-marker"><title>{escape(label)}</title>'
        f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + ph}" stroke="{colour}" '
        f'stroke-width="1.2" opacity="0.7"/>'
        f'<path d="M{mx - 5:.1f},{top - 8} L{mx + 5:.1f},{top - 8} L{mx:.1f},{top} Z" fill="{colour}"/></g>'
    )
