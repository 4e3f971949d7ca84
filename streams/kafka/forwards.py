"""Events forwarded to their account's partition, each applied once by the engine there.

A source forwards a record to the repartition topic with a header naming where it read
it (input partition and offset). A source restored from a checkpoint reads its input
again from there, and forwards again what it had forwarded since: under at_least_once
those copies were always visible, and under exactly_once an exchange commit may have
published the first ones (ExchangeCommits.exchange_commit). The copies come in the order the
source read them, so each receiving engine keeps, per source, the offset after the last
forward it applied, in its checkpoint, and drops every forward below it: a producer's
sequence numbers, per source partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.kafka.fetch import Block

FROM_HEADER = "vigil-from"


def from_header(source: int, offset: int) -> tuple[str, bytes]:
    return (FROM_HEADER, b"%d %d" % (source, offset))


def origin(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int] | None:
    """(source partition, offset) of a forward: the last such header, the one the worker
    added (a producer may have set one too)."""
    for key, value in reversed(headers):
        if key == FROM_HEADER:
            try:
                source, offset = value.split()
                return int(source), int(offset)
            except (ValueError, TypeError, AttributeError):
                return None
    return None


def from_headers(source: int, offsets: Sequence[int]) -> list[tuple[str, bytes]]:
    """`from_header` for many records of one source."""
    prefix = b"%d " % source
    return [(FROM_HEADER, prefix + b"%d" % offset) for offset in offsets]


def fresh(block: Block, applied: dict[int, int]) -> tuple[Block, int]:
    """The records of a repartition block not applied before, and how many were dropped;
    `applied` (source -> offset after its last forward applied) moves past those kept.
    A record without the header (a mark, or one forwarded by an older worker) is kept."""
    found = _origins(block.headers)
    keep = (
        _fresh_rows(*found, applied)
        if found is not None
        else _fresh_rows_one_by_one(block, applied)
    )
    if len(keep) == len(block):
        return block, 0
    return block.take(keep), len(block) - len(keep)


def _origins(headers: Sequence[Sequence[tuple]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(sources, offsets) of every record, read at once, when each record's last header is
    the one the worker added and reads as two integers; None otherwise (the records are
    then read one by one). Parsing each record's header in Python took 7% of the main
    thread when most records were forwarded."""
    if not all(h and h[-1][0] == FROM_HEADER for h in headers):
        return None
    words = b" ".join([h[-1][1] for h in headers]).split()
    if len(words) != 2 * len(headers):
        return None
    try:
        both = np.array(words).astype(np.int64)
    except (ValueError, OverflowError):
        return None
    return both[0::2], both[1::2]


def _fresh_rows(sources: np.ndarray, offsets: np.ndarray, applied: dict[int, int]) -> list[int]:
    """`_fresh_rows_one_by_one` over arrays: per source, a record is kept when its offset
    is at or past both `applied` and every earlier record's of that source (a record
    dropped is below that bound, so counting it changes nothing)."""
    keep = np.ones(len(sources), bool)
    for source in np.unique(sources).tolist():
        rows = np.flatnonzero(sources == source)
        got = offsets[rows]
        start = applied.get(source, -1)
        bound = np.empty_like(got)
        bound[0] = start
        bound[1:] = np.maximum(np.maximum.accumulate(got)[:-1] + 1, start)
        kept = got >= bound
        keep[rows] = kept
        if kept.any():
            applied[source] = max(start, int(got.max()) + 1)
    return np.flatnonzero(keep).tolist()


def _fresh_rows_one_by_one(block: Block, applied: dict[int, int]) -> list[int]:
    keep: list[int] = []
    for i, headers in enumerate(block.headers):
        where = origin(headers) if headers else None
        if where is None:
            keep.append(i)
            continue
        source, offset = where
        if offset < applied.get(source, -1):
            continue
        applied[source] = offset + 1
        keep.append(i)
    return keep
