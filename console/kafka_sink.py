"""The store sink for the Kafka runtime: consumes the alert and snapshot topics.

Offsets are committed only after a batch is in the store, so a crash replays at most the
last batch; the store's writes are idempotent (alert_id, account + window), so a replayed
batch changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from console.sink_metrics import SinkMetrics
from console.store import AlertStore

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    alerts: int = 0
    new_alerts: int = 0
    snapshots: int = 0
    bad_records: int = 0
    batches: int = 0


def _decode(value: bytes | None) -> dict | None:
    if value is None:
        return None  # a compaction tombstone
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def consume(
    store: AlertStore,
    bootstrap: str,
    alerts_topic: str,
    snapshots_topic: str,
    group_id: str,
    stop: threading.Event,
    max_records: int = 2000,
    poll_ms: int = 500,
    metrics: SinkMetrics | None = None,
    **consumer_args: Any,
) -> SinkStats:
    """Copy alerts and snapshots into the store until `stop` is set."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        alerts_topic,
        snapshots_topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        **consumer_args,
    )
    stats = SinkStats()
    metrics = metrics or SinkMetrics((alerts_topic, snapshots_topic))
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=poll_ms, max_records=max_records)
            metrics.update_lag(consumer)
            if not polled:
                continue
            bad_before = stats.bad_records
            alerts: list[dict] = []
            snaps: list[dict] = []
            for tp, records in polled.items():
                target = alerts if tp.topic == alerts_topic else snaps
                for rec in records:
                    obj = _decode(rec.value)
                    if obj is None:
                        stats.bad_records += rec.value is not None
                        continue
                    target.append(obj)
            try:
                stats.new_alerts += store.write_alerts(alerts)
                store.write_snapshots(snaps)
            except (KeyError, TypeError, ValueError) as exc:
                # A malformed record must not wedge the sink; skip the batch item by item.
                log.warning("batch rejected (%s); writing records one by one", exc)
                metrics.errors.labels("batch_rejected").inc()
                stats.bad_records += _write_one_by_one(store, alerts, snaps)
            consumer.commit()
            metrics.last_commit.set(time.time())
            metrics.errors.labels("bad_record").inc(stats.bad_records - bad_before)
            metrics.records.labels(alerts_topic).inc(len(alerts))
            metrics.records.labels(snapshots_topic).inc(len(snaps))
            stats.alerts += len(alerts)
            stats.snapshots += len(snaps)
            stats.batches += 1
    finally:
        consumer.close()
    return stats


def _write_one_by_one(store: AlertStore, alerts: list[dict], snaps: list[dict]) -> int:
    bad = 0
    for a in alerts:
        try:
            store.write_alerts([a])
        except (KeyError, TypeError, ValueError):
            bad += 1
    for s in snaps:
        try:
            store.write_snapshots([s])
        except (KeyError, TypeError, ValueError):
            bad += 1
    return bad
