"""Checks dashboards against the default rules of Grafana's dashboard linter, plus our own.

The rule names follow github.com/grafana/dashboard-linter so a finding reads the same in
either tool; the Go linter runs too wherever it is installed (see docs/observability.md).

    python -m dashboards.lint dashboards/json/*.json
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Panels whose unit and datasource the linter checks.
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
DATASOURCE_PANELS = {"singlestat", "graph", "table", "timeseries", "stat", "gauge", "heatmap"}
# A subset of Grafana's unit ids (packages/grafana-data valueFormats/categories.ts).
VALID_UNITS = {
    "none", "short", "percent", "percentunit", "humidity", "dB", "hex", "hex0x", "sci",
    "locale", "pixel", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations",
    "clockms", "clocks", "bytes", "decbytes", "bits", "decbits", "kbytes", "mbytes",
    "gbytes", "Bps", "bps", "ops", "reqps", "rps", "wps", "iops", "opm", "rpm", "wpm",
    "dateTimeAsIso", "dateTimeAsUS", "dateTimeFromNow", "hertz", "currencyUSD", "string",
}  # fmt: skip
RANGE_FUNCS = re.compile(r"\b(rate|irate|increase)\s*\(")
RANGE = re.compile(r"\[([^\]]+)\]")
# Our metric names all start with vigil_; `up` comes from Prometheus itself.
SELECTOR = re.compile(r"\b(vigil_[a-z0-9_]+|up)\b(\{[^}]*\})?")
COUNTER_FUNC = re.compile(r"\b(rate|irate|increase)\s*\(\s*$")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")


@dataclass(frozen=True)
class Finding:
    rule: str
    dashboard: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.dashboard}: {self.where}: {self.message}"


def lint(dashboard: dict) -> list[Finding]:
    title = dashboard.get("title", "?")
    found: list[Finding] = []

    def add(rule: str, where: str, message: str) -> None:
        found.append(Finding(rule, title, where, message))

    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    _lint_variables(variables, add)
    for panel in panels(dashboard):
        _lint_panel(panel, add)
    _lint_structure(dashboard, add)
    return found


def panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows hold their panels
    return out


def _lint_variables(variables: dict[str, dict], add) -> None:
    sources = [v for v in variables.values() if v.get("type") == "datasource"]
    ds = variables.get("datasource")
    if len(sources) != 1 or ds is None or ds.get("type") != "datasource":
        add("template-datasource-rule", "templating", "need exactly one `datasource` variable")
    elif ds.get("label") != "Data Source" or ds.get("query") not in ("prometheus", "loki"):
        add("template-datasource-rule", "datasource", "label 'Data Source', query prometheus")
    for name in ("job", "instance"):
        var = variables.get(name)
        rule = f"template-{name}-rule"
        if var is None:
            add(rule, "templating", f"no `{name}` variable")
            continue
        ds_uid = (var.get("datasource") or {}).get("uid")
        if var.get("label") != name or var.get("type") != "query":
            add(rule, name, f"must be a query variable labelled {name!r}")
        if ds_uid not in ("$datasource", "${datasource}"):
            add(rule, name, "must query the $datasource variable")
        if not var.get("multi") or var.get("allValue") != ".+":
            add(rule, name, "must be multi-select with allValue '.+'")
    for var in variables.values():
        if var.get("type") != "query":
            continue
        where = f"variable {var.get('name')}"
        if not LABEL_VALUES.match(str(var.get("query", ""))):
            add("template-label-promql-rule", where, "query must be label_values(selector, label)")
        if var.get("refresh") != 2:
            add("template-on-time-change-reload-rule", where, "refresh must be on time change")


def _lint_panel(panel: dict, add) -> None:
    kind = panel.get("type")
    where = f"panel {panel.get('title')!r}"
    if kind == "row":
        return
    if not panel.get("title") or not panel.get("description"):
        add("panel-title-description-rule", where, "needs a title and a description")
    if kind in DATASOURCE_PANELS:
        uid = (panel.get("datasource") or {}).get("uid")
        if uid not in ("$datasource", "${datasource}"):
            add("panel-datasource-rule", where, "must use the $datasource variable")
    if kind in UNIT_PANELS and not panel.get("targets"):
        add("panel-no-targets-rule", where, "has no queries")
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if kind in UNIT_PANELS and not defaults.get("mappings"):
        unit = defaults.get("unit")
        if unit not in VALID_UNITS:
            add("panel-units-rule", where, f"unit {unit!r} is missing or not a Grafana unit")
    for i, tgt in enumerate(panel.get("targets", [])):
        _lint_target(tgt.get("expr", ""), f"{where} target {i}", add)


def _lint_target(expr: str, where: str, add) -> None:
    if not expr.strip():
        add("target-promql-rule", where, "empty expression")
        return
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        add("target-promql-rule", where, "unbalanced brackets")
    for match in RANGE_FUNCS.finditer(expr):
        tail = expr[match.end() :]
        rng = RANGE.search(tail)
        if rng is None or rng.group(1) != "$__rate_interval":
            add("target-rate-interval-rule", where, f"{match.group(1)}() must use $__rate_interval")
    for match in SELECTOR.finditer(expr):
        matchers = match.group(2) or ""
        if match.group(1).endswith("_total") and not (
            COUNTER_FUNC.search(expr[: match.start()]) and expr[match.end() :].lstrip()[:1] == "["
        ):
            add("target-counter-agg-rule", where, f"{match.group(1)} outside rate/irate/increase")
        if 'job=~"$job"' not in matchers:
            add("target-job-rule", where, f'{match.group(1)} lacks job=~"$job"')
        if 'instance=~"$instance"' not in matchers:
            add("target-instance-rule", where, f'{match.group(1)} lacks instance=~"$instance"')


def _lint_structure(dashboard: dict, add) -> None:
    """Rules of our own: stable ids and no datasource pinned by name or numeric id."""
    if not re.fullmatch(r"[a-z0-9-]{1,40}", str(dashboard.get("uid", ""))):
        add("stable-uid", "dashboard", "uid must be a fixed lower-case slug")
    if dashboard.get("id") is not None:
        add("stable-uid", "dashboard", "numeric id must be left out so Grafana assigns it")
    ids = [p.get("id") for p in panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        add("stable-uid", "panels", "every panel needs a unique id")
    for where, ds in _datasources(dashboard):
        if not isinstance(ds, dict) or ds.get("uid") not in ("$datasource", "${datasource}"):
            add("no-hardcoded-datasource", where, f"datasource {ds!r} is not $datasource")


def _datasources(node, path: str = "dashboard"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            else:
                yield from _datasources(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item, path)


def main(argv: list[str]) -> int:
    findings = [f for name in argv for f in lint(json.loads(Path(name).read_text()))]
    for finding in findings:
        print(finding)
    print(f"{len(argv)} dashboards, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
