"""Local table state that is ahead of its changelog is discarded before Faust opens it.

After a crash. A checkpoint writes its records to the local store at once and to the
changelog through the producer, and flushes the producer before it commits anything. A
worker killed in between (kill -9, out of memory) leaves local records its changelog never
got, and Faust, which restores only what the changelog holds past the stored offset,
keeps them. The next checkpoints build on them (an id segment stays named for hours), and
whoever restores that partition from the changelog alone, another worker or a wiped disk,
finds a manifest naming chunks the changelog never held: "the changelog is incomplete"
(the fault soak of stop 40; the changelog showed gen 1's chunks before the kill and
neither its id segment nor its manifest). So local state is kept only when the worker on
it last stopped after its final checkpoint reached the changelog (`mark_clean_stop`);
otherwise every local partition is deleted at start-up and Faust rebuilds it from the
changelog, as for a new worker.

After a rebuild of the cluster. A worker keeps each state-table partition in a RocksDB directory under `--data-dir`, with
the changelog offset it last applied. When the cluster or its topics are rebuilt while that
directory survives, the local offset lies beyond the changelog's end. Faust then stops the
worker with `ConsistencyError` (or, with an empty changelog, keeps the old state, whose
checkpoint would make the engine skip input offsets that now hold new events). Neither is
safe, so at start-up every such partition is deleted, said in a warning and counted in
`vigil_state_discarded_partitions_total`; Faust rebuilds it from the changelog as it would
for a new worker.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import IO, Any

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


def _present(table: Any, partitions: int) -> dict[int, Path]:
    """The partitions of `table` that have a local RocksDB directory, and where."""
    return {p: path for p, path in local_state_dirs(table, partitions).items() if path.exists()}


CLEAN_STOP = "vigil-stopped-cleanly"
LOCK = "vigil.lock"


def hold_data_dir(path: Path) -> IO[str]:
    """Locks `path` for as long as the returned file stays open (this process's life).
    Two workers on one --data-dir would share RocksDB directories, and a starting worker
    deletes the local state a crash left (`discard_after_crash`) that a running one uses.
    Raises ValueError, one line, when another process holds it."""
    path.mkdir(parents=True, exist_ok=True)
    f = (path / LOCK).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ValueError(
            f"--data-dir {path} is in use by {holder}; give each worker a directory of its own"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"the worker with pid {os.getpid()}\n")
    f.flush()
    return f


def clean_stop_marker(table: Any) -> Path:
    """The file, beside the table's partitions, that says the last worker on them stopped
    with its changelog holding everything it wrote."""
    return local_state_dirs(table, 1)[0].parent / CLEAN_STOP


def discard_after_crash(table: Any, partitions: int, counter: Any) -> list[int]:
    """Deletes the local partitions of `table` unless the last worker on them stopped
    cleanly; then removes the marker, so that a crash of this run leaves none."""
    marker = clean_stop_marker(table)
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if clean:
        return []
    present = _present(table, partitions)
    if not present:
        return []
    log.warning(
        "the last worker on %s did not stop cleanly, so its local state may hold writes its "
        "changelog never got; discarding state partitions %s and rebuilding them from the "
        "changelog",
        marker.parent,
        sorted(present),
    )
    for path in present.values():
        shutil.rmtree(path)
        counter.inc()
    return sorted(present)


def mark_clean_stop(table: Any) -> None:
    """Called once the final checkpoint reached the changelog, as the worker stops."""
    marker = clean_stop_marker(table)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("the changelog held every local write when this worker stopped\n")


def discard_stale_state(table: Any, cfg: KafkaConfig, partitions: int, counter: Any) -> list[int]:
    """Deletes the local partitions of `table` that are ahead of its changelog."""
    present = _present(table, partitions)
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
