"""Prometheus metrics of the console: requests, errors and the analyst backlog.

`install(app, store)` adds a middleware that counts requests by route template (a closed
set: the app's own routes) and status class, and serves `/metrics`. The backlog is read
from the store at scrape time, so it is right even with several console replicas or after
a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from console import backlog
from console.store import AlertStore

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
UNMATCHED = "unmatched"  # 404s for paths outside the app: never the raw path (unbounded)


class BacklogCollector:
    def __init__(self, store: AlertStore, sla_s: dict[str, float]) -> None:
        self.store = store
        self.sla_s = sla_s

    def collect(self) -> Iterator:
        summary = backlog.summarise(backlog.open_items(self.store), self.sla_s)
        open_ = GaugeMetricFamily(
            "vigil_backlog_open_alerts",
            "Alerts waiting for a first verdict, by severity and age group",
            labels=["alert_severity", "age"],
        )
        oldest = GaugeMetricFamily(
            "vigil_backlog_oldest_age_seconds",
            "Age of the oldest alert waiting for a verdict, by severity (0 when none)",
            labels=["alert_severity"],
        )
        over = GaugeMetricFamily(
            "vigil_backlog_over_sla_alerts",
            "Alerts waiting longer than their severity's SLA",
            labels=["alert_severity"],
        )
        sla = GaugeMetricFamily(
            "vigil_backlog_sla_seconds",
            "Time to a first verdict allowed per severity",
            labels=["alert_severity"],
        )
        for sev, row in summary.items():
            for age, n in row["ages"].items():
                open_.add_metric([sev, age], n)
            oldest.add_metric([sev], row["oldest"])
            over.add_metric([sev], row["over_sla"])
            sla.add_metric([sev], self.sla_s[sev])
        verdicts = CounterMetricFamily(
            "vigil_backlog_verdicts", "Verdicts recorded by analysts", labels=["verdict"]
        )
        for verdict, n in backlog.verdict_counts(self.store).items():
            verdicts.add_metric([verdict], n)
        yield from (open_, oldest, over, sla, verdicts)

    def describe(self) -> list:
        return []


class ConsoleMetrics:
    def __init__(self, store: AlertStore, sla_s: dict[str, float] | None = None) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "vigil_console_requests",
            "Console HTTP requests, by route template, method and status class",
            ["route", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "vigil_console_request_duration_seconds",
            "Console request handling time",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.start_time = Gauge(
            "vigil_console_start_time_seconds", "Wall time the console started", registry=r
        )
        self.start_time.set(time.time())
        r.register(BacklogCollector(store, {**backlog.DEFAULT_SLA_S, **(sla_s or {})}))

    def zero_init(self, routes: list[tuple[str, str]]) -> None:
        """Every (route, method) x status class at 0, so error ratios exist from start-up."""
        for path, method in routes:
            for status in STATUS_CLASSES:
                self.requests.labels(path, method, status)
            self.duration.labels(path)


def flat_routes(routes: list, prefix: str = "") -> list:
    """Every route with its full path. FastAPI keeps an included router as one entry
    (`original_router`, plus its prefix), so walk into those."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            out += flat_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif hasattr(route, "methods"):
            out.append((prefix, route))
    return out


def route_templates(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (prefix + route.path, method)
        for prefix, route in flat_routes(app.routes)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def install(app: FastAPI, store: AlertStore, sla_s: dict[str, float] | None = None) -> None:
    """Count every request and serve /metrics; call after the routes are included."""
    metrics = ConsoleMetrics(store, sla_s)
    app.state.console_metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        from prometheus_client import generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    metrics.zero_init(route_templates(app))

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", UNMATCHED)
            metrics.requests.labels(path, request.method, f"{status // 100}xx").inc()
            metrics.duration.labels(path).observe(time.perf_counter() - t0)
