"""Input records as columns, unpacked from the fetched bytes without a Python object each.

aiokafka turns every fetched record into a ConsumerRecord through a generator, about 3 µs a
record: on a 2-core machine that was as much as the detection engine itself, and since the
main thread waits for it on every `getmany`, it ran in series with the engine. For the topics
in `BulkPartitionRecords.topics`, the record batches of one partition fetch are walked in C
(`streams.kafka._records`, about 0.4 µs a record, CRC-32C checked as aiokafka checks it) and
handed over as one `Block`. Fetching, positions, pausing and rebalances stay aiokafka's.

Batches the C walk declines (compressed, or message formats before v2) are unpacked by
aiokafka's own batch reader, one batch at a time. A fetch that carries aborted transactions
under read_committed is left entirely to aiokafka, which knows which batches to skip.

`install()` swaps two names inside `aiokafka.consumer.fetcher`, the only place that builds
these objects, and raises aiokafka's connection reader limit (READER_LIMIT below); the
pinned aiokafka version is tested against both in tests/unit/kafka/test_fetch.py.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka import conn, errors
from aiokafka.consumer import fetcher
from aiokafka.record.memory_records import MemoryRecords

from streams.kafka import _records

_READ_COMMITTED = 1  # aiokafka's IsolationLevel.READ_COMMITTED
# aiokafka reads each connection through an asyncio StreamReader whose limit, 64 KiB, pauses
# the socket after every 128 KiB until the reader asks for more: for a fetch response of
# 8 x 4 MiB, hundreds of extra event-loop turns in the consumer thread, each waiting for the
# GIL the engines hold. The limit only decides when reading pauses; the buffer still holds
# no more than the responses in flight.
READER_LIMIT = 64 * 1024 * 1024
_NO_HEADERS: tuple = ()


@dataclass(slots=True)
class Block:
    """Records of one partition, oldest first, as parallel lists."""

    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple]

    def __len__(self) -> int:
        return len(self.offsets)

    def since(self, offset: int) -> Block:
        """The records at `offset` or later."""
        i = bisect_left(self.offsets, offset)
        if i == 0:
            return self
        return Block(self.offsets[i:], self.keys[i:], self.values[i:], self.headers[i:])

    def take(self, rows: Sequence[int]) -> Block:
        return Block(
            [self.offsets[i] for i in rows],
            [self.keys[i] for i in rows],
            [self.values[i] for i in rows],
            [self.headers[i] for i in rows],
        )

    @classmethod
    def empty(cls) -> Block:
        return cls([], [], [], [])

    @classmethod
    def of(cls, items: Sequence[Any]) -> Block:
        """One Block from what aiokafka returned: Blocks, record objects, or both."""
        if len(items) == 1 and type(items[0]) is Block:
            return items[0]
        out = cls.empty()
        for item in items:
            if type(item) is Block:
                out.extend(item)
            else:
                out.append(item)
        return out

    def append(self, record: Any) -> None:
        """Adds one of aiokafka's records: a ConsumerRecord or a record of a batch."""
        self.offsets.append(record.offset)
        self.keys.append(record.key)
        self.values.append(record.value)
        self.headers.append(tuple(record.headers) if record.headers else _NO_HEADERS)

    def extend(self, other: Block) -> None:
        self.offsets.extend(other.offsets)
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.headers.extend(other.headers)


class RawMemoryRecords(MemoryRecords):
    """aiokafka's MemoryRecords that keeps the fetched bytes for the C walk."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.raw = raw


class BulkPartitionRecords(fetcher.PartitionRecords):
    """aiokafka's PartitionRecords; for `topics`, yields one Block per partition fetch."""

    topics: ClassVar[frozenset[str]] = frozenset()

    def _unpack_records(self) -> Iterator[Any]:
        raw = getattr(self._records, "raw", None)
        if (
            self._tp.topic not in self.topics
            or raw is None
            or (self._isolation_level == _READ_COMMITTED and self._aborted_transactions)
        ):
            yield from super()._unpack_records()
            return
        block = self._walk(memoryview(raw))
        if block:
            yield block

    def _walk(self, raw: memoryview) -> Block:
        block = Block.empty()
        pos = 0
        while pos < len(raw):
            offsets, keys, values, headers, next_offset, used, status = _records.parse(
                raw[pos:], self.next_fetch_offset, self._check_crcs
            )
            block.extend(Block(offsets, keys, values, headers))
            if next_offset >= 0:
                self.next_fetch_offset = max(self.next_fetch_offset, next_offset)
            pos += used
            if status == _records.END:
                break
            if status == _records.DECLINED:
                pos += self._unpack_one(raw[pos:], block)
                continue
            what = "Invalid CRC" if status == _records.BAD_CRC else "Malformed record batch"
            # As aiokafka does: nothing of this fetch is returned; it is fetched again.
            raise errors.CorruptRecordException(f"{what} - {self._tp}")
        return block

    def _unpack_one(self, raw: memoryview, block: Block) -> int:
        """Unpacks the first batch of `raw` with aiokafka's reader; returns its length.

        The C walk declines only whole batches, so `raw` holds all of this one.
        """
        size = 12 + int.from_bytes(raw[8:12], "big", signed=True)
        batch = MemoryRecords(bytes(raw[:size])).next_batch()
        if self._check_crcs and not batch.validate_crc():
            raise errors.CorruptRecordException(f"Invalid CRC - {self._tp}")
        if not getattr(batch, "is_control_batch", False):
            for r in batch:
                if r.offset >= self.next_fetch_offset:
                    block.append(r)
                    self.next_fetch_offset = r.offset + 1
        self.next_fetch_offset = max(self.next_fetch_offset, batch.next_offset)
        return size


def install(topics: frozenset[str]) -> None:
    """Fetches of `topics` come back as Blocks from here on, in this process, and every
    aiokafka connection opened after this reads with READER_LIMIT."""
    conn.READER_LIMIT = max(conn.READER_LIMIT, READER_LIMIT)
    BulkPartitionRecords.topics = BulkPartitionRecords.topics | topics
    fetcher.PartitionRecords = BulkPartitionRecords  # type: ignore[misc]
    fetcher.MemoryRecords = RawMemoryRecords  # type: ignore[misc]
