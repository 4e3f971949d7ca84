"""Input records as columns, unpacked from the fetched bytes without a Python object each.

aiokafka turns every fetched record into a ConsumerRecord through a generator, about 3 µs a
record: on a 2-core machine that was as much as the detection engine itself, and since the
main thread waits for it on every `getmany`, it ran in series with the engine. For the topics
in `BulkPartitionRecords.topics`, the record batches of one partition fetch are walked in C
(`streams.kafka._records`, about 0.4 µs a record, CRC-32C checked as aiokafka checks it) and
handed over as one `Block`. Fetching, positions, pausing and rebalances stay aiokafka's.

Batches the C walk declines (compressed, or message formats before v2) are unpacked by
aiokafka's own batch reader, one batch at a time. A fetch that carries aborted transactions
under read_committed is read entirely by aiokafka, which knows which batches to skip. Either
way a Block names the fetch position it was read from and the one after it, so the
Processor can tell a Block that does not follow on from what its engine holds.

A garbled batch (bad CRC, a malformed record, offsets that contradict each other, anything
either reader refuses) raises CorruptRecordException from `walk`. The worker's path
(`unpack`) does not let it escape into aiokafka, where it would stop the consumer
and be fetched again forever: the records before the bad batch are handed over, then the
bad batch itself as a `CorruptBatch` on the Block, which the Processor dead-letters with its
reason, partition and offsets, and the fetch position moves past it (see `skip_bad_batch`).

For the input topic a Block also carries each record's partition by its account
(`where`, streams/kafka/routing.py), found in the same thread: that walk over every record
ran on the main thread, which bounds the worker, and the consumer thread has time to spare.
For the same reason the compiled event decoder runs over input and repartition Blocks there
too (`columns`, `decode_here`), and the engine uses what it gave
(streams/contract/events.py, `decode_lines`); a Block cut down to some rows keeps theirs.

`install()` makes aiokafka build these objects for every fetch and raises its connection
reader limit (READER_LIMIT below), both through streams/kafka/internals.py, where the
aiokafka internals they rely on are pinned.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from aiokafka import errors
from aiokafka.record.memory_records import MemoryRecords

from streams.contract import _decode
from streams.contract.events import take_columns
from streams.kafka import _records
from streams.kafka.bundles import unpack_rows
from streams.kafka.internals import (
    PartitionRecordsHooks,
    RawMemoryRecords,
    install_partition_records,
    raise_reader_limit,
)

__all__ = ["Block", "BulkPartitionRecords", "CorruptBatch", "RawMemoryRecords", "install"]
# aiokafka reads each connection through an asyncio StreamReader whose limit, 64 KiB, pauses
# the socket after every 128 KiB until the reader asks for more: for a fetch response of
# 8 x 4 MiB, hundreds of extra event-loop turns in the consumer thread, each waiting for the
# GIL the engines hold. The limit only decides when reading pauses; the buffer still holds
# no more than the responses in flight.
READER_LIMIT = 64 * 1024 * 1024
_NO_HEADERS: tuple = ()


@dataclass(slots=True)
class CorruptBatch:
    """A record batch that could not be read: dead-lettered, then skipped."""

    offset: int  # the fetch position where it was met: the first offset not read
    next_offset: int  # where reading resumes
    reason: str
    raw: bytes  # the batch's bytes as framed (or what was left of the fetch)


@dataclass(slots=True)
class Block:
    """Records of one partition, oldest first, as parallel lists, and any batch that could
    not be read among them (at most one per fetch, after the records before it)."""

    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple]
    corrupt: list[CorruptBatch] = field(default_factory=list)
    # The fetch position the records were read from, and the one after them: a Block
    # covers every offset in between, control records and aborted transactions included
    # (-1: not known, for records built one by one).
    fetched_from: int = -1
    until: int = -1
    # int32 per record: the partition of its account, as `_decode.partitions` gives it
    # (None: not worked out; Router.split does it then).
    where: bytes | None = None
    # `values` decoded in the consumer thread (`BulkPartitionRecords.decoded`): the line
    # limit they were decoded under, and the columns `_decode.decode` gave. None: not
    # decoded there, or the rows changed since.
    columns: tuple[int, tuple] | None = None
    # Repartition Blocks, once their bundles are unpacked (`unbundled`): per record, the
    # source partition and input offset it was forwarded from (-1, -1: not forwarded).
    # None: not unpacked.
    origins: tuple[np.ndarray, np.ndarray] | None = None
    # Repartition Blocks, once unpacked: (offset, source, time) of the event-time marks
    # their records held, taken out of the rows (bundles.unpack_rows).
    marks: list[tuple[int, int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def since(self, offset: int) -> Block:
        """The records at `offset` or later."""
        i = bisect_left(self.offsets, offset)
        bad = [c for c in self.corrupt if c.next_offset > offset] if self.corrupt else self.corrupt
        marks = [m for m in self.marks if m[0] >= offset]
        if i == 0 and len(bad) == len(self.corrupt) and len(marks) == len(self.marks):
            return self
        rows = self.offsets[i:], self.keys[i:], self.values[i:], self.headers[i:]
        where = self.where[4 * i :] if self.where is not None else None
        columns = self.columns if i == 0 else None
        origins = self.origins and (self.origins[0][i:], self.origins[1][i:])
        return Block(*rows, bad, self.fetched_from, self.until, where, columns, origins, marks)

    def columns_for(self, max_line_bytes: int) -> tuple | None:
        """The decoded columns of `values`, if decoded under this line limit."""
        if self.columns is None or self.columns[0] != max_line_bytes:
            return None
        return self.columns[1]

    def take(self, rows: Sequence[int]) -> Block:
        columns = None
        if self.columns is not None:  # the rows' share of what the consumer thread decoded
            columns = (self.columns[0], take_columns(self.columns[1], rows))
        origins = None
        if self.origins is not None:
            at = np.asarray(rows, np.intp)
            origins = (self.origins[0][at], self.origins[1][at])
        return Block(
            [self.offsets[i] for i in rows],
            [self.keys[i] for i in rows],
            [self.values[i] for i in rows],
            [self.headers[i] for i in rows],
            list(self.corrupt),
            self.fetched_from,
            self.until,
            columns=columns,
            origins=origins,
            marks=list(self.marks),
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
        if self.origins is not None or other.origins is not None:
            # Unpacked and packed rows are never mixed: the origins cover every row.
            if self.origins is None:
                self._become(self.unbundled())
            other = other.unbundled()
            self.origins = (
                np.concatenate([self.origins[0], other.origins[0]]),  # type: ignore[index]
                np.concatenate([self.origins[1], other.origins[1]]),  # type: ignore[index]
            )
        self.where = self.columns = None
        if self.fetched_from < 0 and not self.offsets and not self.corrupt:
            self.fetched_from = other.fetched_from
        self.until = max(self.until, other.until)
        self.offsets.extend(other.offsets)
        self.keys.extend(other.keys)
        self.values.extend(other.values)
        self.headers.extend(other.headers)
        self.corrupt.extend(other.corrupt)
        self.marks.extend(other.marks)

    def unbundled(self) -> Block:
        """This repartition Block with each bundle's events as records of their own
        (bundles.py), all at the bundle's offset, and `origins` set; itself once done.
        Records forwarded one by one, by workers before bundles, name their origin in a
        header; anything unreadable has none. Event-time marks go to `marks`."""
        if self.origins is not None:
            return self
        rows, sources, read_at, marks = unpack_rows(
            self.offsets, self.keys, self.values, self.headers
        )
        origins = (np.array(sources, np.int64), np.array(read_at, np.int64))
        if rows is None:  # no bundle or mark: the rows as they are
            return replace(self, origins=origins, marks=list(self.marks))
        return Block(
            *rows, self.corrupt, self.fetched_from, self.until, origins=origins, marks=marks
        )

    def _become(self, other: Block) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(other, name))

    def end_offset(self) -> int:
        """The offset after everything this Block covers, records and bad batches (-1 when
        it covers nothing)."""
        last = self.offsets[-1] + 1 if self.offsets else -1
        return max([last, self.until, *(c.next_offset for c in self.corrupt)])


class BulkPartitionRecords(PartitionRecordsHooks):
    """aiokafka's PartitionRecords; for `topics`, yields one Block per partition fetch."""

    topics: ClassVar[frozenset[str]] = frozenset()
    # Topic -> `_decode.partitions`'s arguments (Router.placement): Blocks of these carry
    # `where`.
    routed: ClassVar[dict[str, tuple[int, int, int]]] = {}
    # Topic -> the engines' line limit: Blocks of these carry `columns` when every record
    # stays on its partition (`decode_here`).
    decoded: ClassVar[dict[str, int]] = {}
    # Topics whose Blocks have their bundles unpacked (bundles.py): the repartition topic.
    bundled: ClassVar[frozenset[str]] = frozenset()

    # (Block or None, the position after it) when `prepare` read the fetch ahead.
    ahead: tuple[Block | None, int] | None = None

    def prepare(self) -> None:
        """Reads the fetch as it arrives, in the client's thread. Read only when the main
        thread asks (`getmany`), the walk ran while the engines waited for it; now it
        overlaps their work on the previous fetch. The position stays at the fetch offset
        until the Block is handed over, as aiokafka checks it against the consumer's
        before handing anything (a pause or seek in between drops the fetch). Fetches
        carrying aborted transactions are still read when asked."""
        raw = self.fetched_bytes
        if self.tp.topic not in self.topics or raw is None or self.has_aborted_transactions():
            return
        start = self.next_fetch_offset
        block = self.read(raw)
        self.ahead = (block, self.next_fetch_offset)
        self.next_fetch_offset = start

    def unpack(self) -> Iterator[Any]:
        raw = self.fetched_bytes
        if self.ahead is not None:
            block, self.next_fetch_offset = self.ahead
            self.ahead = None
        elif self.tp.topic not in self.topics or raw is None:
            yield from self.aiokafka_unpack()
            return
        else:
            block = self.read(raw)
        if block is not None:
            yield block

    def read(self, raw: bytes) -> Block | None:
        """The fetch's records as one Block, moving the position past them; None when
        it covers nothing at all."""
        block = Block.empty()
        block.fetched_from = self.next_fetch_offset
        if self.has_aborted_transactions():
            for record in self.aiokafka_unpack():
                block.append(record)
        else:
            try:
                self.walk(memoryview(raw), block)
            except errors.CorruptRecordException as exc:
                block.corrupt.append(self.skip_bad_batch(raw, exc))
        block.until = self.next_fetch_offset
        if self.tp.topic in self.bundled:
            block = block.unbundled()
        placed = self.routed.get(self.tp.topic)
        if placed and block.values:
            block.where = _decode.partitions(block.values, *placed)
        self.decode_here(block)
        # Even with no record (only transaction markers or aborted batches), the Block
        # says how far the position moved, so the engine's next offset follows it.
        if block or block.corrupt or block.until > block.fetched_from:
            return block
        return None

    def decode_here(self, block: Block) -> None:
        """Decodes the events of `block` in this thread, which the engines' thread would
        otherwise do: the C walk over the lines runs without the GIL, so it overlaps the
        engines' work on earlier records. Records forwarded to another partition's engine
        are decoded too: their source reads its event time from them (watermarks.py), and
        the rows that stay keep their share (`Block.take`). Not when a record has no value,
        or anything else the decoder refuses: the engine then decodes them as before."""
        limit = self.decoded.get(self.tp.topic)
        if not limit or not block.values:
            return
        try:
            block.columns = (limit, _decode.decode(block.values, limit))
        except Exception:  # noqa: BLE001 - the engine's own decode says what is wrong
            block.columns = None

    def walk(self, raw: memoryview, block: Block) -> None:
        """Appends the records of the fetched bytes to `block`, advancing the position.

        Raises CorruptRecordException at the first batch that cannot be read, with what
        was read before it already in `block` and the position at that batch."""
        pos = 0
        self.bad_at = 0  # where the batch being read starts, for `skip_bad_batch`
        first = True
        while pos < len(raw):
            self.bad_at = pos
            offsets, keys, values, headers, next_offset, used, status = _records.parse(
                raw[pos:], self.next_fetch_offset, self.check_crcs, first
            )
            block.extend(Block(offsets, keys, values, headers))
            if next_offset >= 0:
                self.next_fetch_offset = next_offset  # only ever forward: checked in C
                first = False
            pos += used
            self.bad_at = pos
            if status == _records.END:
                break
            if status == _records.DECLINED:
                pos += self.unpack_one(raw[pos:], block, first)
                first = False
                continue
            what = "Invalid CRC" if status == _records.BAD_CRC else "Malformed record batch"
            raise errors.CorruptRecordException(f"{what} - {self.tp}")

    def unpack_one(self, raw: memoryview, block: Block, first: bool) -> int:
        """Unpacks the first batch of `raw` with aiokafka's reader; returns its length.

        The C walk declines only whole batches, so `raw` holds all of this one. Whatever
        aiokafka's reader raises on garbled bytes (struct, index, value or system errors
        from its compiled reader) is refused as a corrupt batch, and so is a batch that
        would move the position back or overlap the one before."""
        size = 12 + int.from_bytes(raw[8:12], "big", signed=True)
        start = self.next_fetch_offset
        try:
            batch = MemoryRecords(bytes(raw[:size])).next_batch()
            if self.check_crcs and not batch.validate_crc():
                raise errors.CorruptRecordException(f"Invalid CRC - {self.tp}")
            if not first and batch.base_offset < start:
                raise errors.CorruptRecordException(f"Overlapping batch - {self.tp}")
            rows = Block.empty()
            if not getattr(batch, "is_control_batch", False):
                for r in batch:
                    if r.offset >= self.next_fetch_offset:
                        rows.append(r)
                        self.next_fetch_offset = r.offset + 1
            if batch.next_offset < self.next_fetch_offset or batch.next_offset <= start:
                raise errors.CorruptRecordException(f"Offsets out of order - {self.tp}")
        except errors.CorruptRecordException:
            self.next_fetch_offset = start
            raise
        except Exception as exc:  # a codec missing for flipped bits is refused the same way
            self.next_fetch_offset = start
            raise errors.CorruptRecordException(
                f"Malformed record batch - {self.tp}: {type(exc).__name__}: {exc}"
            ) from exc
        block.extend(rows)
        self.next_fetch_offset = batch.next_offset
        return size

    def skip_bad_batch(self, raw: bytes, exc: Exception) -> CorruptBatch:
        """Moves the position past the batch that could not be read, and describes it.

        A batch whose header passes its CRC is skipped whole (to base + lastOffsetDelta
        + 1) when the position lies inside it; otherwise nothing in it can be trusted, and
        only one offset is skipped: the broker then sends the batch again from the next
        offset, and each offset it covers is dead-lettered in turn, never silently lost."""
        at = self.next_fetch_offset
        pos = self.bad_at
        size = int.from_bytes(raw[pos + 8 : pos + 12], "big", signed=True) + 12
        frame = raw[pos : pos + size] if 26 <= size <= len(raw) - pos else raw[pos:]
        resume = at + 1
        if len(frame) >= 61 and frame[16] == 2:
            base = int.from_bytes(frame[0:8], "big", signed=True)
            last = base + int.from_bytes(frame[23:27], "big", signed=True)
            crc_ok = _records.crc32c(frame[21:]) == int.from_bytes(frame[17:21], "big")
            if crc_ok and base <= at <= last < (1 << 63) - 1:
                resume = last + 1
        self.next_fetch_offset = resume
        return CorruptBatch(at, resume, str(exc), bytes(frame))


def install(
    topics: frozenset[str],
    routed: dict[str, tuple[int, int, int]] | None = None,
    decoded: dict[str, int] | None = None,
    bundled: frozenset[str] = frozenset(),
) -> None:
    """Fetches of `topics` come back as Blocks from here on, in this process, and every
    aiokafka connection opened after this reads with READER_LIMIT. Blocks of the `routed`
    topics (topic -> the Router's `placement`: partitions, partitioner code, line limit)
    say where each record's account belongs; those of the `decoded` topics (topic -> line
    limit) carry their events decoded, and those of the `bundled` topics carry each
    bundle's events as records of their own."""
    raise_reader_limit(READER_LIMIT)
    BulkPartitionRecords.topics = BulkPartitionRecords.topics | topics
    BulkPartitionRecords.routed = {**BulkPartitionRecords.routed, **(routed or {})}
    BulkPartitionRecords.decoded = {**BulkPartitionRecords.decoded, **(decoded or {})}
    BulkPartitionRecords.bundled = BulkPartitionRecords.bundled | bundled
    install_partition_records(BulkPartitionRecords)


def all_here(where: bytes, partition: int) -> bool:
    """Every record of `where` (int32 partitions, -1: unknown) belongs to `partition`."""
    found = np.frombuffer(where, np.int32)
    return bool(((found == partition) | (found == -1)).all())
