"""Local table state that is ahead of its changelog is discarded before Faust opens it.

A worker keeps each state-table partition in a RocksDB directory under `--data-dir`, with
the changelog offset it last applied. When the cluster or its topics are rebuilt while that
directory survives, the local offset lies beyond the changelog's end. Faust then stops the
worker with `ConsistencyError` (or, with an empty changelog, keeps the old state, whose
checkpoint would make the engine skip input offsets that now hold new events). Neither is
safe, so at start-up every such partition is deleted, said in a warning and counted in
`vigil_state_discarded_partitions_total`; Faust rebuilds it from the changelog as it would
for a new worker.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from streams.core.config import KafkaConfig
from streams.kafka.internals import local_offset_key, local_state_dirs
from streams.runtime.kafka_client import kafka_python_options

log = logging.getLogger(__name__)


def persisted_offset(path: Path, offset_key: bytes) -> int | None:
    """The changelog offset a partition's RocksDB directory says it applied, read-only."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        raw = db.get(offset_key)
    finally:
        db.close()
    return int(raw) if raw is not None else None


def changelog_ends(cfg: KafkaConfig, topic: str, partitions: int) -> dict[int, int]:
    """The end offset of every partition of `topic`; 0 for a topic that does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(client_id="vigil-state-check", **kafka_python_options(cfg))
    try:
        if topic not in consumer.topics():
            return dict.fromkeys(range(partitions), 0)
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def stale_partitions(local: dict[int, int | None], ends: dict[int, int]) -> list[int]:
    """Partitions whose local offset is at or past the changelog's end.

    Faust stores the offset of the last record applied, so a consistent partition is
    always below the end offset (the next offset to be written).
    """
    return sorted(p for p, off in local.items() if off is not None and off >= ends.get(p, 0))


def discard_stale_state(table: Any, cfg: KafkaConfig, partitions: int, counter: Any) -> list[int]:
    """Deletes the local partitions of `table` that are ahead of its changelog."""
    paths = local_state_dirs(table, partitions)
    present = {p: path for p, path in paths.items() if path.exists()}
    if not present:
        return []
    key = local_offset_key(table)
    local = {p: persisted_offset(path, key) for p, path in present.items()}
    ends = changelog_ends(cfg, table.changelog_topic.get_topic_name(), partitions)
    stale = stale_partitions(local, ends)
    for p in stale:
        log.warning(
            "state partition %d is ahead of its changelog (local offset %s, changelog end %d): "
            "the cluster or its topics were rebuilt; discarding %s and rebuilding from the "
            "changelog",
            p,
            local[p],
            ends.get(p, 0),
            present[p],
        )
        shutil.rmtree(present[p])
        counter.inc()
    return stale
