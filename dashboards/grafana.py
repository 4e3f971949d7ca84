"""Small builders for Grafana dashboard JSON.

Every panel reads from the `$datasource` template variable and every PromQL selector is
narrowed by the `$job` and `$instance` variables, so one dashboard serves the compose
stack, a Kubernetes cluster and a local `vigil replay` alike.
"""

from __future__ import annotations

import re
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
GRID_WIDTH = 24


def sel(metric: str, *matchers: str) -> str:
    """`metric{job=~"$job", instance=~"$instance", ...}` for the dashboard's targets."""
    parts = ['job=~"$job"', 'instance=~"$instance"', *matchers]
    return f"{metric}{{{', '.join(parts)}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}[$__rate_interval])"


def quantile(q: float, histogram: str, by: str = "", *matchers: str) -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket', *matchers)}))"


def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "") -> dict:
    out: dict[str, Any] = {
        "datasource": dict(DATASOURCE),
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if fmt:
        out["format"] = fmt
    return out


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict],
    *,
    unit: str = "",
    width: int = 12,
    height: int = 8,
    options: dict | None = None,
    defaults: dict | None = None,
    links: list[dict] | None = None,
    **extra: Any,
) -> dict:
    field_defaults: dict[str, Any] = {"unit": unit} if unit else {}
    field_defaults.update(defaults or {})
    out: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"w": width, "h": height},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options or {},
    }
    if links:
        out["links"] = links
    out.update(extra)
    return out


def timeseries(title: str, description: str, targets: list[dict], unit: str, **kw: Any) -> dict:
    stacked = kw.pop("stacked", False)
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults = {"custom": custom, **kw.pop("defaults", {})}
    options = {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=defaults,
        **kw,
    )


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {
        "mode": "absolute",
        "steps": [{"value": value, "color": color} for value, color in steps],
    }


def stat(title: str, description: str, targets: list[dict], unit: str, **kw: Any) -> dict:
    defaults = kw.pop("defaults", {})
    defaults.setdefault("thresholds", thresholds((None, "green")))
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    }
    return panel(
        "stat",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=defaults,
        width=kw.pop("width", 6),
        height=kw.pop("height", 5),
        **kw,
    )


def gauge(title: str, description: str, targets: list[dict], unit: str, **kw: Any) -> dict:
    defaults = kw.pop("defaults", {})
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showThresholdMarkers": True,
    }
    return panel(
        "gauge",
        title,
        description,
        targets,
        unit=unit,
        options=options,
        defaults=defaults,
        width=kw.pop("width", 6),
        height=kw.pop("height", 5),
        **kw,
    )


def table(title: str, description: str, targets: list[dict], **kw: Any) -> dict:
    options = {"showHeader": True, "cellHeight": "sm"}
    transformations = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
        },
    ]
    return panel(
        "table",
        title,
        description,
        targets,
        unit="none",
        options=options,
        transformations=transformations,
        **kw,
    )


def heatmap(title: str, description: str, targets: list[dict], **kw: Any) -> dict:
    options = {
        "calculate": False,
        "yAxis": {"axisPlacement": "left", "unit": "none"},
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5},
        "rowsFrame": {"layout": "le"},
        "tooltip": {"mode": "single", "yHistogram": True},
    }
    return panel("heatmap", title, description, targets, unit="short", options=options, **kw)


def text(title: str, description: str, content: str, **kw: Any) -> dict:
    out = {
        "type": "text",
        "title": title,
        "description": description,
        "gridPos": {"w": kw.pop("width", 6), "h": kw.pop("height", 5)},
        "options": {"mode": "markdown", "content": content},
    }
    out.update(kw)
    return out


def datasource_variable() -> dict:
    return {
        "name": "datasource",
        "label": "Data Source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, query: str, label: str | None = None) -> dict:
    """A multi-select label variable whose "All" matches any value (`.+`)."""
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": query,
        "definition": query,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def textbox_variable(name: str, label: str, default: str, description: str) -> dict:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "textbox",
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
        "options": [{"selected": True, "text": default, "value": default}],
    }


def standard_variables() -> list[dict]:
    return [
        datasource_variable(),
        query_variable("job", "label_values(vigil_start_time_seconds, job)"),
        query_variable("instance", 'label_values(vigil_start_time_seconds{job=~"$job"}, instance)'),
    ]


def console_variable() -> dict:
    return textbox_variable(
        "console_url",
        "Analyst console",
        "http://localhost:8080",
        "Base URL of the Vigil analyst console that links open",
    )


def console_data_link(title: str, query: str) -> dict:
    """A link from a series to the console's alert queue, filtered by the series' labels."""
    return {"title": title, "url": f"${{console_url}}/alerts?{query}", "targetBlank": True}


def console_link() -> dict:
    return {
        "title": "Analyst console",
        "type": "link",
        "url": "${console_url}",
        "targetBlank": True,
        "icon": "external link",
        "tooltip": "Open the Vigil analyst console",
        "asDropdown": False,
        "includeVars": False,
        "keepTime": False,
        "tags": [],
    }


def row(title: str) -> dict:
    """A full-width row header; the panels after it belong to it."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": GRID_WIDTH, "h": 1},
    }


# Changes the runtime itself reports, drawn on every dashboard. Each query returns a series
# only for a short while after the change, which Grafana draws as one annotation: an info
# series (model or config version) that did not exist 2 minutes earlier, or a process whose
# start time is under 2 minutes old. `{SEL}` becomes the job and instance matchers.
def _appeared(metric: str, label: str) -> str:
    # An info metric is exported without labels until its process sets it (a worker before
    # its first partition): that is no version, and no change.
    now = f"count by (job, instance, {label}) ({metric}{{SEL_{label}}})"
    return f"{now} unless {now[:-1]} offset 2m)"


ANNOTATIONS: tuple[tuple[str, str, str, str], ...] = (
    ("model change", "purple", _appeared("vigil_model_info", "version"), "model {{version}}"),
    (
        "config change",
        "orange",
        _appeared("vigil_config_info", "config_version"),
        "config {{config_version}}",
    ),
    (
        "restart",
        "red",
        "time() - max by (job, instance) (vigil_start_time_seconds{SEL}) < 120",
        "{{instance}} started",
    ),
)


def annotations() -> list[dict]:
    matchers = '{job=~"$job", instance=~"$instance"}'
    return [
        {
            "name": name,
            "datasource": dict(DATASOURCE),
            "enable": True,
            "hide": False,
            "iconColor": color,
            "expr": re.sub(
                r"\{SEL(?:_(\w+))?\}",
                lambda m: matchers[:-1] + (f', {m.group(1)}!=""}}' if m.group(1) else "}"),
                expr,
            ),
            "step": "60s",
            "titleFormat": title,
            "tagKeys": "job,instance",
            "useValueForTime": False,
        }
        for name, color, expr, title in ANNOTATIONS
    ]


def layout(panels: list[dict]) -> list[dict]:
    """Gives panels ids and flows them left to right into 24-column rows."""
    x = y = row_height = 0
    out = []
    for pid, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append({**p, "id": pid, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x += w
        row_height = max(row_height, h)
    return out


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict],
    variables: list[dict],
    links: list[dict] | None = None,
) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vigil"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [
            {
                "title": "Vigil dashboards",
                "type": "dashboards",
                "tags": ["vigil"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            },
            *(links or []),
        ],
        "templating": {"list": variables},
        "annotations": {"list": annotations()},
        "panels": layout(panels),
    }
