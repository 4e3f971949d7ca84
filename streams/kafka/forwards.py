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


def fresh(block: Block, applied: dict[int, int]) -> tuple[Block, int]:
    """The records of a repartition block not applied before, and how many were dropped;
    `applied` (source -> offset after its last forward applied) moves past those kept.
    A record without the header (a mark, or one forwarded by an older worker) is kept."""
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
    if len(keep) == len(block):
        return block, 0
    return block.take(keep), len(block) - len(keep)
