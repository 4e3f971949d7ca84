"""Worker settings that are not part of the shared config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streams.core.config import KafkaConfig


@dataclass(frozen=True)
class WorkerSettings:
    data_dir: Path = Path("data/worker")  # RocksDB table stores
    web_port: int = 6066  # /metrics and /health
    web_host: str = "127.0.0.1"
    checkpoint_interval_s: float = 5.0
    # One fetch round-trip to the consumer thread carries this many records at most.
    max_poll_records: int = 10_000
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    # Longest the broker holds a fetch for partitions with nothing new (consumer.py says
    # why it matters): the Java client's default, not Faust's 1500.
    fetch_max_wait_ms: int = 500
    repartition: bool = True  # forward records not keyed/partitioned by account
    # Per account-window feature snapshots for the console.
    emit_snapshots: bool = True
    # Snapshots go out at the first checkpoint after this long: the latest per account.
    # A live stream closes a window every few minutes, so this only thins out a backlog.
    snapshot_interval_s: float = 30.0
    dead_letter_max_bytes: int = 900 * 1024  # raw payload kept in a dead letter
    # A crashed worker's partitions move to the others after this long.
    session_timeout_s: float = 10.0
    recovery_stuck_s: float = 120.0  # /health turns 503 after this long in recovery
    stall_s: float = 60.0  # ... or after this long with lag and no progress
    audit_topic: str = ""  # when set, one record per processed batch: partition/offset range
    state_table: str = "engine-state"
    loglevel: str = "WARNING"
    classifier: bool = True  # False: run on the other detectors (asked for explicitly)

    def repartition_topic(self, cfg: KafkaConfig) -> str:
        return f"{cfg.input_topic}-by-account"


def ensure_data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
