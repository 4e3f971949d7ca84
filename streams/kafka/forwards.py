"""Events forwarded to their account's partition, each applied once by the engine there.

A source forwards events to the repartition topic in bundles that name where it read each
one (input partition and offset; bundles.py). A source restored from a checkpoint reads its
input again from there, and forwards again what it had forwarded since: under
at_least_once those copies were always visible, and under exactly_once an exchange commit
may have published the first ones (ExchangeCommits.exchange_commit). The copies come in the
order the source read them, so each receiving engine keeps, per source, the offset after
the last forward it applied, in its checkpoint, and drops every forward below it: a
producer's sequence numbers, per source partition. Copies need not be bundled as the first
sends were: each event is judged on its own.
"""

from __future__ import annotations

import numpy as np

from streams.kafka.block import Block


def fresh(block: Block, applied: dict[int, int]) -> tuple[Block, int]:
    """The records of a repartition block not applied before (its bundles unpacked), and
    how many were dropped; `applied` (source -> offset after its last forward applied)
    moves past those kept. A record with no origin (a mark) is kept."""
    block = block.unbundled()
    sources, offsets = block.origins  # type: ignore[misc]
    keep = _fresh_rows(sources, offsets, applied)
    if len(keep) == len(block):
        return block, 0
    return block.take(keep), len(block) - len(keep)


def _fresh_rows(sources: np.ndarray, offsets: np.ndarray, applied: dict[int, int]) -> list[int]:
    """Per source, a record is kept when its offset is at or past both `applied` and every
    earlier record's of that source (a record dropped is below that bound, so counting it
    changes nothing); records of no source (-1) are kept."""
    keep = np.ones(len(sources), bool)
    for source in np.unique(sources).tolist():
        if source < 0:
            continue
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
