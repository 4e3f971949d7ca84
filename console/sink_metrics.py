"""Prometheus metrics of `vigil store-sink`: what it copied, how far behind, what failed.

Without them the console could go stale (the sink stopped, lagging or rejecting records)
with nobody paged. Served with `vigil store-sink --metrics-port P`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

ERROR_KINDS = ("bad_record", "batch_rejected")


@dataclass
class SinkMetrics:
    topics: tuple[str, ...] = ()
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.records = Counter(
            "vigil_store_sink_records",
            "Records copied from Kafka into the store, by topic",
            ["topic"],
            registry=r,
        )
        self.errors = Counter(
            "vigil_store_sink_errors",
            "Records the sink could not store (bad_record) and batches it had to split "
            "because the store rejected them (batch_rejected)",
            ["kind"],
            registry=r,
        )
        self.lag = Gauge(
            "vigil_store_sink_lag",
            "Records between each partition's high watermark and the sink's position",
            ["topic", "partition"],
            registry=r,
        )
        self.last_commit = Gauge(
            "vigil_store_sink_last_commit_timestamp_seconds",
            "Wall time the sink last committed a batch stored",
            registry=r,
        )
        self.start_time = Gauge(
            "vigil_store_sink_start_time_seconds", "Wall time the sink started", registry=r
        )
        self.start_time.set(time.time())
        for topic in self.topics:
            self.records.labels(topic)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)

    def update_lag(self, consumer) -> None:  # type: ignore[no-untyped-def]
        """From the high watermarks the last fetches reported; no extra broker call."""
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            behind = max(high - consumer.position(tp), 0)
            self.lag.labels(tp.topic, str(tp.partition)).set(behind)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
