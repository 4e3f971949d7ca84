"""`[webhook]`: where alerts are POSTed for an enforcement or ticketing service, and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streams.core.alerts import CATEGORIES, Severity


@dataclass(frozen=True)
class WebhookConfig:
    """`[webhook]`: POST each alert, HMAC-signed, to an enforcement or ticketing service
    (streams/runtime/webhook.py, docs/webhooks.md). An empty url: no webhook."""

    url: str = ""
    # The signing key comes from this environment variable, never from the file.
    secret_env: str = "VIGIL_WEBHOOK_SECRET"
    secret: str = field(default="", repr=False)  # filled by from_env; never printed
    min_severity: Severity = "low"
    categories: tuple[str, ...] = ()  # empty: every category
    timeout_s: float = 5.0  # per attempt
    max_retries: int = 5  # attempts after the first, then the alert is dead-lettered
    backoff_base_s: float = 0.5  # doubled per retry, with jitter, up to backoff_cap_s
    backoff_cap_s: float = 30.0
    max_retry_after_s: float = 300.0  # a receiver's Retry-After is honoured up to this
    queue_size: int = 10_000  # alerts waiting for delivery; beyond it they are dead-lettered
    close_timeout_s: float = 10.0  # at shutdown, time to drain the queue before dead-lettering


def webhook_problem(w: WebhookConfig) -> str | None:
    """What is wrong with a `[webhook]` table, in one line naming the field, or None."""
    if not w.url:
        return None
    parts = urlsplit(w.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook.url: must be an http:// or https:// URL with a host"
    if not w.secret_env:
        return "webhook.secret_env: must name the environment variable of the secret"
    unknown = sorted(set(w.categories) - set(CATEGORIES))
    if unknown:
        return f"webhook.categories: unknown {unknown}; known: {list(CATEGORIES)}"
    for name in ("timeout_s", "backoff_base_s", "queue_size"):
        if getattr(w, name) <= 0:
            return f"webhook.{name}: must be > 0"
    for name in ("max_retries", "max_retry_after_s", "close_timeout_s"):
        if getattr(w, name) < 0:
            return f"webhook.{name}: must be >= 0"
    if w.backoff_cap_s < w.backoff_base_s:
        return "webhook.backoff_cap_s: must be >= backoff_base_s"
    return None
