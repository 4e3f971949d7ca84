"""`vigil produce`: replays an events file into the input topic at a controlled rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.core.config import KafkaConfig
from streams.core.inputs import open_events
from streams.core.problems import READ_ERRORS, one_line
from streams.kafka.routing import account_of
from streams.runtime.kafka_client import kafka_python_options


def read_lines(path: Path) -> Iterator[bytes]:
    """The file's non-empty lines. One that cannot be read to its end (a gzip file cut
    short or damaged, a read error) raises ValueError in one line, after every line
    before that point."""
    n = 0
    with open_events(path) as f:
        try:
            for line in f:
                line = line.rstrip(b"\r\n")
                if line:
                    n += 1
                    yield line
        except READ_ERRORS as exc:
            raise ValueError(
                f"{path} is unreadable after {n:,} lines ({one_line(exc)}); those were sent"
            ) from None


def make_producer(cfg: KafkaConfig, **overrides: Any) -> Any:
    from kafka import KafkaProducer

    opts: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "client_id": "vigil-produce",
    }
    opts.update(overrides)
    return KafkaProducer(**kafka_python_options(cfg), **opts)


def produce(
    lines: Iterator[bytes],
    cfg: KafkaConfig,
    topic: str | None = None,
    rate: float = 0.0,
    key_by_account: bool = True,
    producer: Any = None,
    on_send: Any = None,
) -> int:
    """Sends every line; `rate` > 0 paces to that many events per second on average.

    `on_send(line, future)` lets a caller keep the delivery metadata (benchmarks use it
    to time produce-to-alert latency).
    """
    own = producer is None
    producer = producer or make_producer(cfg)
    topic = topic or cfg.input_topic
    t0 = time.perf_counter()
    n = 0
    try:
        for line in lines:
            key = account_of(line) if key_by_account else None
            fut = producer.send(topic, value=line, key=key)
            if on_send is not None:
                on_send(line, fut)
            n += 1
            if rate > 0 and n % 64 == 0:
                ahead = n / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        if own:
            producer.close()
    return n
