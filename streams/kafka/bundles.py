"""The repartition topic's record format for forwarded events: bundles.

A source sends the events it forwards to one partition as a few Kafka records, not one
each: a bundle's value is its events' bytes back to back, and its one header
(`BUNDLE_HEADER`) says where they were read and where each ends: the source partition,
then each event's input offset (int64), then each event's length (uint32), little-endian.
One record per event cost the source a batch append, a key and a header each, and its
engine a record walk and a header parse each, about two fifths of a worker's main thread
when most events were forwarded (docs/kafka.md, "Forwarding in bundles").

Workers before bundles sent one record per event, with a `FROM_HEADER` naming its source
and offset. Such records may still wait in the topic when a group is upgraded, so they are
still read (`origin`).

A source's event-time marks (streams/kafka/watermarks.py) travel the same topic: records
with no value and one `MARK_HEADER`, naming the source and its mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from streams.kafka import _records

BUNDLE_HEADER = "vigil-forwards"
FROM_HEADER = "vigil-from"
MARK_HEADER = "vigil-watermark"
# A bundle's events, in bytes: new ones start past this. A longer event goes in a bundle of
# its own, which fits the topic since `[engine] max_line_bytes` leaves room for it. Two
# bundles fill one of the producer's 512 KiB batches (app.PRODUCER_BATCH_BYTES).
BUNDLE_BYTES = 256 * 1024
_OFFSETS = np.dtype("<i8")
_LENGTHS = np.dtype("<u4")


def pack(
    source: int, offsets: Sequence[int], values: Sequence[bytes], limit: int = BUNDLE_BYTES
) -> list[tuple[bytes, bytes]]:
    """(value, header) of each bundle holding `values`, read from partition `source` at
    `offsets`, in order."""
    if not values:
        return []
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    ends = np.cumsum(lengths)
    out = []
    start = 0
    while start < len(values):
        base = int(ends[start - 1]) if start else 0
        # Past the first event, only those that end within the limit join it.
        stop = max(start + 1, int(np.searchsorted(ends, base + limit, side="right")))
        header = (
            np.array([source, *offsets[start:stop]], _OFFSETS).tobytes()
            + lengths[start:stop].astype(_LENGTHS).tobytes()
        )
        out.append((b"".join(values[start:stop]), header))
        start = stop
    return out


def unpack(value: bytes | None, header: bytes) -> tuple[int, list[int], list[bytes]] | None:
    """(source, input offsets, events) of a bundle; None when its header does not describe
    its value (the record is then read as one event, which the engine dead-letters).
    The reference for `_records.unbundle`, which the worker uses."""
    n, extra = divmod(len(header) - _OFFSETS.itemsize, _OFFSETS.itemsize + _LENGTHS.itemsize)
    if value is None or n < 1 or extra:
        return None
    head = np.frombuffer(header, _OFFSETS, n + 1)
    lengths = np.frombuffer(header, _LENGTHS, n, _OFFSETS.itemsize * (n + 1)).astype(np.int64)
    ends = np.cumsum(lengths)
    if int(ends[-1]) != len(value) or int(head[0]) < 0:
        return None
    starts = (ends - lengths).tolist()
    events = [value[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]
    return int(head[0]), head[1:].tolist(), events


def unpack_rows(
    offsets: list[int], keys: list, values: list, headers: list[tuple]
) -> tuple[tuple[list, list, list, list] | None, list[int], list[int], list[tuple]]:
    """A repartition topic's records with each bundle's events as records of their own, all
    at the bundle's offset, without key or headers, and the marks left out (None when there
    is neither); the source partition and input offset of each (-1, -1: anything
    unreadable); and the (offset, source, time) of each mark. Events that workers before
    bundles forwarded one by one name theirs in a header. Marks come out here, in the
    consumer thread: cut out of the unpacked events on the main thread, they cost a copy
    of every forwarded event there (5% of it when most events were forwarded)."""
    out: tuple[list, list, list, list] = ([], [], [], [])
    sources: list[int] = []
    read_at: list[int] = []
    marks: list[tuple] = []
    found = False
    for row in zip(offsets, keys, values, headers, strict=True):
        these = row[3]
        header = bundle_header(these) if these else None
        got = _records.unbundle(row[2], header) if header is not None else None
        if got is None and these and row[2] == b"":
            mark = decode_mark(these)
            if mark is not None:
                marks.append((row[0], *mark))
                found = True
                continue
        if got is not None:
            source, at, events = got
            n = len(events)
            out[0].extend([row[0]] * n)
            out[1].extend([None] * n)
            out[2].extend(events)
            out[3].extend([()] * n)
            sources += [source] * n
            read_at += at
            found = True
            continue
        for column, value in zip(out, row, strict=True):
            column.append(value)
        where = origin(these) if these else None
        sources.append(where[0] if where else -1)
        read_at.append(where[1] if where else -1)
    return (out if found else None), sources, read_at, marks


def last_header(headers: Sequence[tuple[str, bytes]], key: str) -> bytes | None:
    """The value of the last header named `key`: the one the worker added (a producer may
    have set one too)."""
    for name, value in reversed(headers):
        if name == key:
            return value
    return None


def bundle_header(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The bundle header of a record's headers, if it has one."""
    return last_header(headers, BUNDLE_HEADER)


def encode_mark(source: int, ts: float) -> list[tuple[str, bytes]]:
    """The headers of a mark: `source` has been read up to event time `ts`."""
    return [(MARK_HEADER, f"{source} {ts!r}".encode())]


def decode_mark(headers: Iterable[tuple[str, bytes]]) -> tuple[int, float] | None:
    """(source, time) of a mark's first `MARK_HEADER`; None when it has none readable."""
    for key, value in headers:
        if key == MARK_HEADER:
            try:
                source, ts = value.split()
                return int(source), float(ts)
            except (ValueError, TypeError):
                return None
    return None


def from_header(source: int, offset: int) -> tuple[str, bytes]:
    """The header a worker before bundles gave each event it forwarded."""
    return (FROM_HEADER, b"%d %d" % (source, offset))


def origin(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int] | None:
    """(source partition, offset) of an event forwarded on its own, by its last
    `FROM_HEADER`."""
    value = last_header(headers, FROM_HEADER)
    if value is None:
        return None
    try:
        source, offset = value.split()
        return int(source), int(offset)
    except (ValueError, TypeError, AttributeError):
        return None
