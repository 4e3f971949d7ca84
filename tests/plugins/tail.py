"""Incremental topic reads for verifiers that poll a topic while a test runs.

`KafkaEnv.read` reads a topic from its start and then waits for it to go idle; polled once
a second over a growing topic, that spends most of a phase re-reading and idling. A `Tail`
keeps its consumer and its positions, and each call reads only what was written since.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError


class Tail:
    """One topic, read from its start a little further at each `new()` call."""

    def __init__(self, bootstrap: str, topic: str, committed_only: bool = False) -> None:
        self.topic = topic
        self.options = dict(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            isolation_level="read_committed" if committed_only else "read_uncommitted",
            # A batch the fault soak corrupts on disk on purpose must not stop the reader
            # at it: the worker dead-letters it, and the records after it are counted.
            check_crcs=False,
        )
        self.consumer = KafkaConsumer(**self.options)
        self.tps: list[TopicPartition] = []
        self.next: dict[TopicPartition, int] = {}  # after the last record returned

    def new(self, timeout_s: float = 60.0) -> list:
        """The records written since the last call, up to every partition's end as of this
        call (its last stable offset when `committed_only`: open and aborted transactions
        are not returned). A broker failing meanwhile (the fault soak kills one) ends the
        call with what was read; the next call goes on from there on a fresh client."""
        out: list = []
        try:
            self._read(out, timeout_s)
        except KafkaError:
            self._reopen()
        return out

    def _read(self, out: list, timeout_s: float) -> None:
        c = self.consumer
        if not self.tps:  # the topic's partitions are fixed once it exists
            parts = c.partitions_for_topic(self.topic) or set()
            if not parts:
                return
            self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            c.assign(self.tps)
        ends = c.end_offsets(self.tps, timeout_ms=10_000)
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp, timeout_ms=10_000) < ends[tp] for tp in self.tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: not read to {ends} in {timeout_s} s")
            for tp, recs in c.poll(timeout_ms=200).items():
                out.extend(recs)
                self.next[tp] = recs[-1].offset + 1

    def _reopen(self) -> None:
        self.consumer.close()
        self.consumer = KafkaConsumer(**self.options)
        if self.tps:
            self.consumer.assign(self.tps)
            for tp, offset in self.next.items():
                self.consumer.seek(tp, offset)

    def close(self) -> None:
        self.consumer.close()
