"""Prometheus metrics shared by both runners.

Every metric lives on one registry per process so `vigil replay` and `vigil worker`
export the same names. No metric carries a per-account or per-IP label: label values
come only from small closed sets (reasons, severities, categories, detectors).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily

from streams.engine.alert_latency import ALERT_LATENCY_BUCKETS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 5000, 10000, 50000)


class ScoreHistograms:
    """vigil_detector_score: one histogram per detector, observed a whole array at a time.

    A window scores thousands of account-windows per detector; observing them one by one
    through prometheus_client would cost more than scoring them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bounds = np.array(SCORE_BUCKETS)
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}

    def ensure(self, detector: str) -> None:
        """Export the detector's histogram at 0 before its first observation."""
        with self._lock:
            if detector not in self._counts:
                self._counts[detector] = np.zeros(len(self._bounds) + 1, dtype=np.int64)
                self._sums[detector] = 0.0

    def observe_many(self, detector: str, values: np.ndarray) -> None:
        idx = np.searchsorted(self._bounds, values, side="left")
        add = np.bincount(idx, minlength=len(self._bounds) + 1)
        with self._lock:
            if detector not in self._counts:
                self._counts[detector] = np.zeros(len(self._bounds) + 1, dtype=np.int64)
                self._sums[detector] = 0.0
            self._counts[detector] += add
            self._sums[detector] += float(np.sum(values))

    def collect(self):
        fam = HistogramMetricFamily(
            "vigil_detector_score",
            "Distribution of each detector's score over account-windows",
            labels=["detector"],
        )
        with self._lock:
            for det, counts in self._counts.items():
                cum = np.cumsum(counts)
                buckets = [
                    (repr(float(b)), int(c)) for b, c in zip(self._bounds, cum, strict=False)
                ]
                buckets.append(("+Inf", int(cum[-1])))
                fam.add_metric([det], buckets, self._sums[det])
        yield fam

    def describe(self):
        return []


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_read = Counter(
            "vigil_events_read", "Input records read, good or bad", registry=r
        )
        self.events_processed = Counter(
            "vigil_events_processed", "Events accepted by the contract and processed", registry=r
        )
        # The same count as a plain int, for /health: rendering the registry to read one
        # counter would cost a worker more than the poll it answers.
        self.processed_count = 0
        self.events_rejected = Counter(
            "vigil_events_rejected",
            "Events sent to the dead-letter sink, by reason",
            ["reason"],
            registry=r,
        )
        self.account_collisions = Counter(
            "vigil_account_code_collisions",
            "Account ids whose code collided with a held account's, kept apart",
            registry=r,
        )
        self.events_duplicate = Counter(
            "vigil_events_duplicate", "Events dropped as duplicates of an event_id", registry=r
        )
        self.alerts = Counter(
            "vigil_alerts",
            "Alerts emitted, by severity, category and primary detector",
            ["severity", "category", "detector"],
            registry=r,
        )
        self.alerts_by_version = Counter(
            "vigil_alerts_by_version",
            "Alerts emitted, by the model and config version that produced them",
            ["model_version", "config_version"],
            registry=r,
        )
        self.shadow_accounts = Counter(
            "vigil_shadow_alerted_accounts",
            "Accounts alerted in a window by the champion, the shadow model or both",
            ["agreement"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "vigil_alerts_suppressed",
            "Alerts held back by cooldown, snooze, a missing reason or the verdict gate",
            ["cause"],
            registry=r,
        )
        self.windows_closed = Counter(
            "vigil_account_windows_scored", "Account-windows scored", registry=r
        )
        self.processing_latency = Histogram(
            "vigil_processing_latency_seconds",
            "Wall time to process one batch of events",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_time_lag = Histogram(
            "vigil_event_time_lag_seconds",
            "Wall clock minus event time of the newest event in a batch",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.watermark = Gauge(
            "vigil_watermark_timestamp_seconds", "Event-time watermark", registry=r
        )
        self.active_accounts = Gauge(
            "vigil_active_accounts", "Accounts with state held in memory", registry=r
        )
        self.accounts_evicted = Counter(
            "vigil_accounts_evicted", "Idle accounts whose state was evicted", registry=r
        )
        self.budget_evicted = Counter(
            "vigil_state_budget_evicted_accounts",
            "Accounts evicted, idlest first, to keep engine state within its byte budget",
            registry=r,
        )
        self.budget_windows_forced = Counter(
            "vigil_state_budget_windows_closed_early",
            "Open windows closed before the watermark passed them, to bound their bytes",
            registry=r,
        )
        self.budget_windows_split = Counter(
            "vigil_state_budget_windows_split",
            "Windows scored in parts by account, holding more accounts than the budget allows",
            registry=r,
        )
        self.budget_dedup_turned = Counter(
            "vigil_state_budget_dedup_turnovers",
            "Dedup id generations turned over before their horizon, to bound their bytes",
            registry=r,
        )
        self.state_bytes = Gauge(
            "vigil_state_bytes",
            "Bytes of engine state, by part (accounts, open_windows, dedup, campaign)",
            ["part"],
            registry=r,
        )
        self.state_budget = Gauge(
            "vigil_state_budget_bytes", "The engine's state byte budget", registry=r
        )
        self.account_bytes = Gauge(
            "vigil_account_state_bytes",
            "Bytes of account state per account held (arrays by capacity, ids, index)",
            registry=r,
        )
        self.open_window_bytes = Gauge(
            "vigil_open_window_bytes",
            "Bytes of events held until their window closes, raw lines included",
            registry=r,
        )
        self.detector_score = ScoreHistograms()
        r.register(self.detector_score)
        self.classifier_latency = Histogram(
            "vigil_classifier_inference_seconds",
            "ONNX classifier inference time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.classifier_batch = Histogram(
            "vigil_classifier_batch_size",
            "Rows per ONNX classifier call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_info = Info("vigil_model", "Loaded classifier model", registry=r)
        self.model_loaded = Gauge(
            "vigil_model_loaded", "1 when the classifier model loaded, 0 when it failed", registry=r
        )
        self.detector_info = Info("vigil_detectors", "Detector versions", registry=r)
        self.config_info = Info(
            "vigil_config", "Version (stable hash) of the effective detection config", registry=r
        )
        self.alert_latency = Histogram(
            "vigil_alert_latency_seconds",
            "Wall time from the stream reaching a window's end to that window's alerts",
            buckets=ALERT_LATENCY_BUCKETS,
            registry=r,
        )
        self.last_checkpoint = Gauge(
            "vigil_last_checkpoint_timestamp_seconds",
            "Wall time of the last completed checkpoint (0 before the first)",
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "vigil_checkpoint_age_seconds",
            "Seconds since the last completed checkpoint",
            registry=r,
        )
        self.checkpoint_age.set_function(self._checkpoint_age)
        self.up_since = Gauge(
            "vigil_start_time_seconds", "Wall time this process started", registry=r
        )
        self.up_since.set(time.time())
        from streams.engine.metric_labels import zero_init_counters  # imports the contract

        zero_init_counters(self)
        from streams.engine.webhook_metrics import WebhookMetrics

        self.webhook = WebhookMetrics(r)  # zero-initialised itself

    def count_processed(self, n: int) -> None:
        self.events_processed.inc(n)
        self.processed_count += n

    def _checkpoint_age(self) -> float:
        last = self.last_checkpoint._value.get()
        return time.time() - last if last else 0.0

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
