"""The webhook sink: each alert POSTed, HMAC-signed, to an enforcement or ticketing service.

`write` only filters and queues, into a bounded queue, so a slow or unreachable receiver
never stalls detection; one background thread delivers the queue in order. An attempt that
times out, cannot connect, or gets 408, 429 or 5xx is retried with exponential backoff and
jitter (a `Retry-After` is honoured, up to `max_retry_after_s`); any other non-2xx status
is final. An alert given up on - rejected, out of retries, queue full, or still queued at
shutdown - goes to the dead-letter callback with the reason and the last status or error:
none is dropped silently.

What a receiver gets (docs/webhooks.md shows how to check it):
- the body: the alert's JSON, exactly the bytes signed;
- `X-Vigil-Timestamp`: Unix seconds of this attempt;
- `X-Vigil-Signature`: `v1=` + hex HMAC-SHA256(secret, timestamp + "." + body), so an
  old request replayed later fails the receiver's freshness check;
- `Idempotency-Key`: the alert_id, the same on every retry and after a worker restart
  replays the alert, so the receiver drops duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import queue
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from streams.contract.reference import DeadLetter
from streams.core.alerts import SEVERITIES
from streams.core.config import WebhookConfig
from streams.engine.engine import Output
from streams.engine.webhook_metrics import WebhookMetrics

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Vigil-Delivery-Attempt"
USER_AGENT = "vigil-webhook/1"
ERROR_BODY_BYTES = 200  # of a refusal's body, kept in the dead letter's detail
MAX_READ_BYTES = 64 * 1024  # of any answer's body; a longer one is cut off
RETRIED_STATUSES = {408: "status_408", 429: "status_429"}


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for one attempt."""
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass
class _Item:
    alert_id: str
    body: bytes
    queued: float  # monotonic, for the delivery latency


@dataclass
class Result:
    """One attempt: `failure` is None on a 2xx, else a WEBHOOK_FAILURES reason."""

    failure: str | None
    retry: bool = False
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None


def classify(status: int) -> tuple[str | None, bool]:
    """(failure reason, worth retrying) of an HTTP status."""
    if 200 <= status < 300:
        return None, False
    if status in RETRIED_STATUSES:
        return RETRIED_STATUSES[status], True
    if 500 <= status < 600:
        return "status_5xx", True
    if 400 <= status < 500:
        return "status_4xx", False
    return "status_other", False  # 1xx or a redirect: a POST is never re-sent elsewhere


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookSink:
    """A `Sink` of alerts. `dead_letter` is called from the delivery thread (and from the
    caller's, when the queue is full), so it must be thread-safe."""

    def __init__(
        self,
        cfg: WebhookConfig,
        metrics: WebhookMetrics,
        dead_letter: Callable[[DeadLetter], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not cfg.url or not cfg.secret:
            raise ValueError("webhook: needs a url and a secret")
        self.cfg = cfg
        self.metrics = metrics
        self._dead_letter = dead_letter
        self._clock = clock
        self._secret = cfg.secret.encode()
        self._min_rank = SEVERITIES.index(cfg.min_severity)
        self._categories = frozenset(cfg.categories)
        self._rng = random.Random()
        self._conn = _connection(cfg)
        parts = urlsplit(cfg.url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._queue: queue.Queue[_Item] = queue.Queue(cfg.queue_size)
        self._closing = threading.Event()  # drain what is queued, then stop
        self._abandon = threading.Event()  # stop now: dead-letter what is left
        self._closed = False
        self.counts: Counter[str] = Counter()  # sent and each dead-letter reason, for summaries
        self._thread = threading.Thread(target=self._run, name="vigil-webhook", daemon=True)
        self._thread.start()

    # -- the engine's side: never blocks -----------------------------------------------
    def write(self, out: Output) -> None:
        for alert in out.alerts:
            if SEVERITIES.index(alert.severity) < self._min_rank:
                continue
            if self._categories and alert.category not in self._categories:
                continue
            item = _Item(alert.alert_id, alert.to_json(), time.monotonic())
            if self._closed:
                self._give_up(item, "webhook_shutdown", "written after the sink was closed")
                continue
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._give_up(
                    item, "webhook_queue_full", f"{self.cfg.queue_size} alerts already waiting"
                )
        self.metrics.queue_depth.set(self._queue.qsize())

    def close(self) -> None:
        """Drain the queue for up to close_timeout_s, then dead-letter what is left."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._thread.join(self.cfg.close_timeout_s)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(self.cfg.timeout_s + 1.0)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._give_up(item, "webhook_shutdown", "still queued when the process stopped")
        self.metrics.queue_depth.set(0)
        self._conn.close()

    # -- the delivery thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._abandon.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            self.metrics.queue_depth.set(self._queue.qsize())
            try:
                self._deliver(item)
            except Exception as exc:  # a bug here must not kill the thread and strand the queue
                log.exception("webhook delivery of %s failed", item.alert_id)
                self._give_up(item, "webhook_retries_exhausted", f"{type(exc).__name__}: {exc}")

    def _deliver(self, item: _Item) -> None:
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self.metrics.retries.inc()
            res = self._post(item, attempt)
            if res.failure is None:
                self.metrics.sent.inc()
                self.metrics.delivery_seconds.observe(time.monotonic() - item.queued)
                self.counts["sent"] += 1
                return
            self.metrics.failures.labels(res.failure).inc()
            tried = f"{res.detail} (attempt {attempt})"
            if not res.retry:
                self._give_up(item, "webhook_rejected", tried)
                return
            if attempt > self.cfg.max_retries:
                self._give_up(item, "webhook_retries_exhausted", tried)
                return
            if self._abandon.wait(self._backoff(attempt, res.retry_after)):
                self._give_up(item, "webhook_shutdown", f"stopped while retrying; last {tried}")
                return

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential, capped, half of it random so retries of many workers spread out.
        d = min(self.cfg.backoff_cap_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
        d = d / 2 + self._rng.uniform(0, d / 2)
        if retry_after is not None:
            d = max(d, min(retry_after, self.cfg.max_retry_after_s))
        return d

    def _post(self, item: _Item, attempt: int) -> Result:
        ts = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, item.body),
            IDEMPOTENCY_HEADER: item.alert_id,
            ATTEMPT_HEADER: str(attempt),
        }
        for fresh in (False, True):
            reused = self._conn.sock is not None
            try:
                self._conn.request("POST", self._path, body=item.body, headers=headers)
                resp = self._conn.getresponse()
                text = resp.read(MAX_READ_BYTES)
                if not resp.isclosed():  # more than we read: do not reuse the connection
                    self._conn.close()
            except TimeoutError as exc:
                self._conn.close()
                return Result(
                    "timeout", True, detail=f"timeout after {self.cfg.timeout_s} s: {exc}"
                )
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                if reused and not fresh:
                    continue  # the receiver closed an idle kept-alive connection: reconnect
                return Result("connection", True, detail=f"{type(exc).__name__}: {exc}")
            failure, retry = classify(resp.status)
            snippet = text[:ERROR_BODY_BYTES].decode("utf-8", "replace").strip()
            return Result(
                failure,
                retry,
                status=resp.status,
                detail=f"HTTP {resp.status}: {snippet}" if snippet else f"HTTP {resp.status}",
                retry_after=retry_after_seconds(resp.getheader("Retry-After"), self._clock()),
            )
        raise AssertionError("unreachable")

    def _give_up(self, item: _Item, reason: str, detail: str) -> None:
        self.metrics.dead_lettered.labels(reason).inc()
        self.counts[reason] += 1
        log.warning("webhook: alert %s dead-lettered (%s): %s", item.alert_id, reason, detail)
        try:
            self._dead_letter(DeadLetter(item.body, reason, f"alert {item.alert_id}: {detail}"))
        except Exception:
            log.exception("webhook: could not dead-letter alert %s", item.alert_id)


def _connection(cfg: WebhookConfig) -> http.client.HTTPConnection:
    # One kept-alive connection for the thread; http.client reopens it when it was closed.
    parts = urlsplit(cfg.url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        return http.client.HTTPSConnection(host, parts.port, timeout=cfg.timeout_s, context=ctx)
    return http.client.HTTPConnection(host, parts.port, timeout=cfg.timeout_s)
