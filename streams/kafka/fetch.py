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
too (`columns`, `decode_here`: of an input Block, the rows that stay on its partition), and
the engine uses what it gave (streams/contract/events.py, `decode_lines`); a Block cut down
to some rows keeps theirs.

`install()` makes aiokafka build these objects for every fetch and raises its connection
reader limit (READER_LIMIT below), both through streams/kafka/internals.py, where the
aiokafka internals they rely on are pinned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from aiokafka import errors
from aiokafka.record.memory_records import MemoryRecords

from streams.contract import _decode
from streams.kafka import _records
from streams.kafka.block import Block, CorruptBatch
from streams.kafka.internals import (
    PartitionRecordsHooks,
    RawMemoryRecords,
    install_partition_records,
    raise_reader_limit,
)

__all__ = ["BulkPartitionRecords", "RawMemoryRecords", "install"]
# aiokafka reads each connection through an asyncio StreamReader whose limit, 64 KiB, pauses
# the socket after every 128 KiB until the reader asks for more: for a fetch response of
# 8 x 4 MiB, hundreds of extra event-loop turns in the consumer thread, each waiting for the
# GIL the engines hold. The limit only decides when reading pauses; the buffer still holds
# no more than the responses in flight.
READER_LIMIT = 64 * 1024 * 1024
# The last rows of an input Block decoded in any case, for its source's event time.
TIME_ROWS = 64


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
        engines' work on earlier records. Of an input Block whose accounts belong partly
        to other partitions (`where`), only the rows that stay, and the last TIME_ROWS
        (`columns_rows`): the rows that leave are decoded again where they go, and their
        source reads its event time from what it decoded (watermarks.py), which the newest
        events of a partition's Block nearly always include, and which can only hold a
        mark back, never move it past an event read. With seven events in eight forwarded,
        this decode took a third of this thread, about half of it on input rows decoded
        again where they went. Not when a record has no value, or anything else the
        decoder refuses: the engine then decodes them."""
        limit = self.decoded.get(self.tp.topic)
        if not limit or not block.values:
            return
        values, rows = block.values, None
        if block.where is not None:
            where = np.frombuffer(block.where, np.int32)
            here = (where == self.tp.partition) | (where < 0)  # -2: placed after a parse
            if not here.all():
                here[-TIME_ROWS:] = True
                rows = np.flatnonzero(here)
                values = [values[i] for i in rows.tolist()]
        try:
            block.columns = (limit, _decode.decode(values, limit))
            block.columns_rows = rows
        except Exception:  # noqa: BLE001 - the engine's own decode says what is wrong
            block.columns = block.columns_rows = None

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
