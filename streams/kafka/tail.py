"""`vigil alerts tail`: follows the alert topic and prints one alert per line."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson

from streams.core.config import KafkaConfig
from streams.runtime.kafka_client import kafka_python_options


def summary(alert: dict) -> str:
    return (
        f"{alert.get('ts', '?')}  {alert.get('severity', '?'):<8}  "
        f"{alert.get('category', '?'):<20}  {alert.get('account_id', '?')}  "
        f"score={float(alert.get('score', 0)):.2f}"
    )


def tail(
    cfg: KafkaConfig,
    from_beginning: bool = False,
    max_alerts: int = 0,
    timeout_s: float = 0.0,
    as_json: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Prints alerts until `max_alerts` were printed or `timeout_s` passed without one."""
    from kafka import KafkaConsumer

    consumer: Any = KafkaConsumer(
        cfg.alerts_topic,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        client_id="vigil-alerts-tail",
        **kafka_python_options(cfg),
    )
    n = 0
    last = time.monotonic()
    try:
        while True:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    try:
                        alert = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        continue
                    out.write((r.value.decode() if as_json else summary(alert)) + "\n")
                    n += 1
                    last = time.monotonic()
                    if max_alerts and n >= max_alerts:
                        out.flush()
                        return n
            out.flush()
            if timeout_s and time.monotonic() - last > timeout_s:
                return n
    finally:
        consumer.close()
