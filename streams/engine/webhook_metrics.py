"""Metrics of the webhook sink, on the same registry as the engine's `Metrics`.

Both runners export them from start-up, at 0 when no webhook is configured, so the
dead-letter rule and the dashboards read the same names everywhere. Label values are the
closed sets below, never a URL, an account or an alert id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Why one delivery attempt failed (streams/runtime/webhook.py `attempt_failure`).
WEBHOOK_FAILURES = (
    "timeout",
    "connection",
    "status_408",
    "status_429",
    "status_5xx",
    "status_4xx",
    "status_other",
)
# Why an alert was given up and sent to the dead-letter sink instead.
WEBHOOK_DEAD_REASONS = (
    "webhook_rejected",  # a status that retrying cannot fix (4xx but 408/429, 3xx)
    "webhook_retries_exhausted",  # still failing after max_retries
    "webhook_queue_full",  # the receiver is slower than the alerts come
    "webhook_shutdown",  # still queued when the process stopped and close_timeout_s ran out
)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass
class WebhookMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.sent = Counter(
            "vigil_webhook_sent", "Alerts the webhook receiver accepted (2xx)", registry=r
        )
        self.failures = Counter(
            "vigil_webhook_failures",
            "Webhook delivery attempts that failed, by reason",
            ["reason"],
            registry=r,
        )
        self.retries = Counter(
            "vigil_webhook_retries", "Webhook delivery attempts after an alert's first", registry=r
        )
        self.dead_lettered = Counter(
            "vigil_webhook_dead_lettered",
            "Alerts the webhook gave up on and sent to the dead-letter sink, by reason",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "vigil_webhook_queue_depth", "Alerts waiting for webhook delivery", registry=r
        )
        self.delivery_seconds = Histogram(
            "vigil_webhook_delivery_seconds",
            "Wall time from an alert entering the webhook queue to its receiver's 2xx",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        for reason in WEBHOOK_FAILURES:
            self.failures.labels(reason)
        for reason in WEBHOOK_DEAD_REASONS:
            self.dead_lettered.labels(reason)
