"""The Kafka side of the store: the sink consumer and the label/snooze publisher."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy import text

from console.kafka_sink import consume
from console.labels import KafkaLabelPublisher
from console.store import open_store
from tests.console_data import demo_dataset


def _create(bootstrap: str, *topics: str, compact: bool = False) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    cfg = {"cleanup.policy": "compact"} if compact else {}
    admin.create_topics([NewTopic(t, 2, 1, topic_configs=cfg) for t in topics])
    admin.close()


def _count(store, table: str) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return conn.execute(text(f"select count(*) from {table}")).scalar_one()


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sink_copies_topics_into_the_store_once(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    alerts_t, snaps_t = f"{topic_prefix}-alerts", f"{topic_prefix}-snapshots"
    _create(kafka_bootstrap, alerts_t, snaps_t)
    alerts, snaps = demo_dataset(windows=12, normal_accounts=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for a in alerts:
        producer.send(alerts_t, key=a["account_id"].encode(), value=json.dumps(a).encode())
    for s in snaps:
        producer.send(snaps_t, key=s["account_id"].encode(), value=json.dumps(s).encode())
    producer.send(alerts_t, key=b"x", value=b"not json")
    producer.flush()

    store = open_store(str(tmp_path / "vigil.db"))
    stop = threading.Event()
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(
            stats=consume(
                store, kafka_bootstrap, alerts_t, snaps_t, f"{topic_prefix}-sink", stop, poll_ms=200
            )
        )
    )
    worker.start()
    try:
        _wait(
            lambda: (
                _count(store, "alerts") == len(alerts) and _count(store, "snapshots") == len(snaps)
            )
        )
        # A producer retry re-sends everything: nothing is duplicated.
        for a in alerts:
            producer.send(alerts_t, key=a["account_id"].encode(), value=json.dumps(a).encode())
        producer.flush()
        time.sleep(2)
    finally:
        stop.set()
        worker.join(timeout=30)
        producer.close()
    stats = result["stats"]
    assert stats.alerts == 2 * len(alerts) and stats.new_alerts == len(alerts)
    assert stats.bad_records == 1
    assert _count(store, "alerts") == len(alerts)
    assert _count(store, "snapshots") == len(snaps)
    store.close()


def test_labels_and_snoozes_reach_their_topics(kafka_bootstrap: str, topic_prefix: str) -> None:
    labels_t, snoozes_t = f"{topic_prefix}-labels", f"{topic_prefix}-snoozes"
    _create(kafka_bootstrap, labels_t)
    _create(kafka_bootstrap, snoozes_t, compact=True)
    pub = KafkaLabelPublisher(kafka_bootstrap, labels_t, snoozes_t)
    pub.publish_label({"alert_id": "a1", "account_id": "acct-1", "verdict": "false_positive"})
    pub.publish_snooze(
        {
            "account_id": "acct-1",
            "detector": "series",
            "until_epoch": 2e9,
            "reason": "nightly batch",
        }
    )
    pub.close()
    consumer = KafkaConsumer(
        labels_t,
        snoozes_t,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=f"{topic_prefix}-check",
    )
    got = {}
    for rec in consumer:
        got[rec.topic] = (rec.key, json.loads(rec.value))
        if len(got) == 2:
            break
    consumer.close()
    assert got[labels_t][1]["verdict"] == "false_positive"
    assert got[snoozes_t][0] == b"acct-1\x1fseries"
    assert got[snoozes_t][1]["until_epoch"] == 2e9
