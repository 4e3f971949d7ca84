"""The Prometheus fixture itself: a real server that scrapes a live Vigil metrics endpoint."""

from __future__ import annotations

import pytest

from streams.engine.metrics import Metrics
from tests.plugins.prometheus import PromQLError, free_port


def test_prometheus_scrapes_engine_metrics(prometheus_factory) -> None:
    metrics = Metrics()
    port = free_port()
    metrics.serve(port)
    metrics.events_read.inc(5)
    metrics.events_rejected.labels("malformed_json").inc()
    prom = prometheus_factory({"vigil-test": [f"127.0.0.1:{port}"]})

    read = prom.wait_for('vigil_events_read_total{job="vigil-test"}')
    assert float(read[0]["value"][1]) == 5
    assert read[0]["metric"]["instance"] == f"127.0.0.1:{port}"

    metrics.events_read.inc(7)
    prom.wait_for('vigil_events_read_total{job="vigil-test"} == 12')
    reasons = prom.query("sum by (reason) (vigil_events_rejected_total > 0)")
    assert [r["metric"]["reason"] for r in reasons] == ["malformed_json"]


def test_a_bad_query_raises(prometheus_factory) -> None:
    prom = prometheus_factory({"nothing": [f"127.0.0.1:{free_port()}"]})
    with pytest.raises(PromQLError, match="bad_data"):
        prom.query("sum(rate(vigil_events_read_total[5m])")
    assert prom.wait_for('up{job="nothing"} == 0')
