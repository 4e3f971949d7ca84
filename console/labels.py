"""Where analyst verdicts go for retraining: a JSON Lines file, or Kafka topics.

Snoozes travel the same way: the Kafka workers read them from a compacted topic keyed by
account and detector, while replay reads them straight from the store.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol


class LabelPublisher(Protocol):
    def publish_label(self, label: dict) -> None: ...

    def publish_snooze(self, snooze: dict) -> None: ...

    def close(self) -> None: ...


class NullPublisher:
    def publish_label(self, label: dict) -> None:
        pass

    def publish_snooze(self, snooze: dict) -> None:
        pass

    def close(self) -> None:
        pass


class FileLabelPublisher:
    """Appends one JSON object per verdict; the store stays the source of truth."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def publish_label(self, label: dict) -> None:
        line = json.dumps(label, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()

    def publish_snooze(self, snooze: dict) -> None:
        # Replay reads snoozes from the store, so the file carries labels only.
        pass

    def close(self) -> None:
        pass


class KafkaLabelPublisher:
    """Labels to the labels topic; snoozes to the compacted snoozes topic."""

    def __init__(
        self, bootstrap: str, labels_topic: str, snoozes_topic: str, **producer_args: Any
    ) -> None:
        from kafka import KafkaProducer

        self.labels_topic = labels_topic
        self.snoozes_topic = snoozes_topic
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, **producer_args
        )

    def publish_label(self, label: dict) -> None:
        self.producer.send(
            self.labels_topic,
            key=str(label["account_id"]).encode(),
            value=json.dumps(label, ensure_ascii=False).encode(),
        ).get(timeout=30)

    def publish_snooze(self, snooze: dict) -> None:
        key = f"{snooze['account_id']}\x1f{snooze['detector']}".encode()
        self.producer.send(
            self.snoozes_topic, key=key, value=json.dumps(snooze, ensure_ascii=False).encode()
        ).get(timeout=30)

    def close(self) -> None:
        self.producer.close(timeout=10)


def read_labels(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
