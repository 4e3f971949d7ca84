"""Inline SVG charts drawn on the server: no JavaScript, nothing to build.

All text placed in the SVG goes through `escape`, because account ids and alert ids come
from events and are attacker-controlled.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import quote

from markupsafe import Markup, escape

from console.timeline import axes_svg, cut, marker_svg, onset_svg, parse_range

# Chart -> features to try, in order. "a*b" multiplies two features, so a rate per request
# becomes a count per window (error_rate * requests = errors).
SERIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("requests", "Requests", ("requests",)),
    ("tokens", "Tokens", ("tokens", "total_tokens")),
    ("errors", "Errors", ("errors", "error_rate*requests")),
    ("moderation", "Moderation flags", ("moderation_flags", "flagged_rate*requests")),
    ("new_ips", "New IPs", ("new_ips",)),
)
SEVERITY_COLOURS = {"low": "#6b7280", "medium": "#d97706", "high": "#dc2626", "critical": "#7f1d1d"}


def hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%m-%d %H:%M")


def _value(features: dict, name: str) -> float | None:
    if "*" in name:
        a, b = name.split("*", 1)
        if a not in features or b not in features:
            return None
        return float(features[a] or 0.0) * float(features[b] or 0.0)
    return float(features[name] or 0.0) if name in features else None


def pick_series(timeline: list[dict], names: tuple[str, ...]) -> tuple[str, list[float]]:
    """The first feature (or product) present in any window, with its values (missing as 0)."""
    for name in names:
        values = [_value(w["features"], name) for w in timeline]
        if any(v is not None for v in values):
            return name.replace("*", " × "), [0.0 if v is None else v for v in values]
    return "", []


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if v == int(v) else f"{v:.2f}"


def timeline_chart(
    key: str,
    title: str,
    xs: list[float],
    ys: list[float],
    markers: list[tuple[float, str, str]],
    onset: float | None,
    width: int = 720,
    height: int = 150,
) -> Markup:
    """A step-free line chart of one feature, with alert markers and the onset line.

    `markers` are (epoch, severity, label) for each alert on the account.
    """
    left, right, top, bottom = 48, 8, 22, 22
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" data-series="{escape(key)}" data-points="{len(ys)}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)} per window">',
        f'<text x="{left}" y="12" class="chart-title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f9fafb" stroke="#e5e7eb"/>',
    ]
    if not xs or not ys:
        parts.append(
            f'<text x="{left + 8}" y="{top + ph / 2}" class="chart-empty">'
            "no data for this feature</text></svg>"
        )
        return Markup("".join(parts))
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    # An all-zero series still gets a readable 0..1 axis.
    ymax = max(ys) if max(ys) > 0 else 1.0
    top_tick = _nice(ymax)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y / top_tick) * ph

    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    base = f"{px(xs[-1]):.1f},{top + ph} {px(xs[0]):.1f},{top + ph}"
    parts += axes_svg(x0, x1, top_tick, left, top, pw, ph)
    if onset is not None and x0 <= onset <= x1:
        parts.append(onset_svg(px(onset), top, ph, left + pw))
    parts += [
        f'<polygon points="{pts} {base}" fill="#bfdbfe" opacity="0.6"/>',
        f'<polyline class="series" points="{pts}" fill="none" stroke="#1d4ed8" '
        f'stroke-width="1.5"/>',
    ]
    for when, severity, label in markers:
        if x0 <= when <= x1:
            parts.append(marker_svg(px(when), top, ph, severity, label))
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(v: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 times a power of ten."""
    exp = math.floor(math.log10(v)) if v > 0 else 0
    for m in (1, 2, 5, 10):
        if m * 10**exp >= v:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))


def related_graph(center: str, related: list[dict], size: int = 360) -> Markup:
    """A star graph: this account in the middle, accounts sharing evidence around it."""
    c = size / 2
    radius = size / 2 - 60
    shown = related[:16]
    parts = [
        f'<svg class="related-graph" data-nodes="{len(shown)}" viewBox="0 0 {size} {size}" '
        f'width="{size}" role="img" aria-label="accounts sharing evidence">'
    ]
    nodes = []
    for i, r in enumerate(shown):
        angle = 2 * math.pi * i / max(1, len(shown)) - math.pi / 2
        x, y = c + radius * math.cos(angle), c + radius * math.sin(angle)
        kinds = ", ".join(sorted(r["shared"]))
        parts.append(
            f'<line x1="{c}" y1="{c}" x2="{x:.1f}" y2="{y:.1f}" stroke="#9ca3af" '
            f'stroke-width="{min(6, 1 + r["strength"] / 2):.1f}"><title>'
            f"{escape(kinds)}</title></line>"
        )
        colour = SEVERITY_COLOURS.get(r.get("max_severity") or "", "#9ca3af")
        href = "/accounts/" + quote(r["account_id"], safe="")
        label = r["account_id"] if len(r["account_id"]) <= 18 else r["account_id"][:17] + "…"
        nodes.append(
            f'<a href="{escape(href)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="9" '
            f'fill="{colour}"><title>{escape(r["account_id"])}: {escape(kinds)}</title></circle>'
            f'<text x="{x:.1f}" y="{y + 21:.1f}" text-anchor="middle" class="node-label">'
            f"{escape(label)}</text></a>"
        )
    label = center if len(center) <= 18 else center[:17] + "…"
    parts += nodes
    parts.append(
        f'<circle cx="{c}" cy="{c}" r="12" fill="#1d4ed8"/>'
        f'<text x="{c}" y="{c + 26}" text-anchor="middle" class="node-label center">'
        f"{escape(label)}</text></svg>"
    )
    return Markup("".join(parts))


def account_charts(v: dict, rng: str) -> tuple[list[dict], float | None]:
    """The account page's charts over the chosen range; returns them and the onset."""
    rng = parse_range(rng)
    since = cut([w["window_start"] for w in v["timeline"]], rng)
    windows = [w for w in v["timeline"] if since is None or w["window_start"] >= since]
    xs = [w["window_start"] for w in windows]
    markers = [
        (a["window_start"], a["severity"], f"{a['severity']} {a['category']} alert {a['alert_id']}")
        for a in v["alerts"]
    ]
    onset = min((a["window_start"] for a in v["alerts"]), default=None)
    out = []
    for key, title, names in SERIES:
        feature, ys = pick_series(windows, names)
        out.append(
            {
                "key": key,
                "feature": feature,
                "svg": timeline_chart(key, title, xs if ys else [], ys, markers, onset),
            }
        )
    return out, onset
