"""A `Block`: one partition's records as parallel lists, the unit the worker's fetch path
hands over (fetch.py) and every later step takes: routing, forwarding, event-time marks,
the engines. It carries what the consumer thread worked out about its records (their
accounts' partitions, their decoded columns, the bundles unpacked) so that the main thread
need not, and a `CorruptBatch` for a record batch that could not be read."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from streams.contract.events import take_columns
from streams.kafka.bundles import unpack_rows

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
    # The rows `columns` hold, ascending, where the consumer thread decoded only some (an
    # input Block's rows that stay on its partition, and its last ones); None: every row.
    columns_rows: np.ndarray | None = None
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
        origins = self.origins and (self.origins[0][i:], self.origins[1][i:])
        out = Block(*rows, bad, self.fetched_from, self.until, where, origins=origins, marks=marks)
        if i == 0:  # the same rows: what the consumer thread decoded still fits them
            out.columns, out.columns_rows = self.columns, self.columns_rows
        return out

    def columns_for(self, max_line_bytes: int) -> tuple | None:
        """The decoded columns of every row of `values`, if decoded under this line limit."""
        if self.columns_rows is not None:
            return None
        return self.decoded_for(max_line_bytes)

    def decoded_for(self, max_line_bytes: int) -> tuple | None:
        """What the consumer thread decoded under this line limit: the columns of every
        row, or of `columns_rows` alone."""
        if self.columns is None or self.columns[0] != max_line_bytes:
            return None
        return self.columns[1]

    def take(self, rows: Sequence[int]) -> Block:
        columns = None
        decoded = self._decoded_at(rows) if self.columns is not None else None
        if decoded is not None:  # the rows' share of what the consumer thread decoded
            columns = (self.columns[0], take_columns(self.columns[1], decoded))  # type: ignore[index]
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
        self.where = self.columns = self.columns_rows = None
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

    def _decoded_at(self, rows: Sequence[int]) -> Sequence[int] | None:
        """Where `rows` are among the decoded ones; None unless all of them were."""
        if self.columns_rows is None:
            return rows
        want = np.asarray(rows, np.intp)
        at = np.searchsorted(self.columns_rows, want)
        if len(want) and at.max() >= len(self.columns_rows):
            return None
        return at if np.array_equal(self.columns_rows[at], want) else None

    def _become(self, other: Block) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(other, name))

    def end_offset(self) -> int:
        """The offset after everything this Block covers, records and bad batches (-1 when
        it covers nothing)."""
        last = self.offsets[-1] + 1 if self.offsets else -1
        return max([last, self.until, *(c.next_offset for c in self.corrupt)])


def all_here(where: bytes, partition: int) -> bool:
    """Every record of `where` (int32 partitions, -1: unknown) belongs to `partition`."""
    found = np.frombuffer(where, np.int32)
    return bool(((found == partition) | (found == -1)).all())
