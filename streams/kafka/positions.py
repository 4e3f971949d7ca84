"""Blocks that do not follow on from what their engine holds, and reading them again.

Faust resumes a partition's fetching just before it seeks the partition to its committed
offset after a rebalance. A fetch made in between reads from wherever the previous
assignment left the position, past records the drain loop discarded while the partition
was recovering. Applied, such a Block moved the engine past records the seek was about to
read again, and those were then skipped as applied: events lost under exactly_once
(docs/kafka.md). A Block names the position it was read from, so the processor can tell.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)

# How many times a partition is read again from its engine's next offset before a gap that
# keeps coming back is taken as records the broker no longer has (retention).
GAP_RETRIES = 5


class Refetch:
    """Drops Blocks read from past their engine's next offset and seeks back to it."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter  # vigil_batches_refetched_total
        self.tries: dict[tuple[TP, int], int] = {}

    async def drop(self, consumer: Any, tp: TP, expected: int, fetched_from: int) -> bool:
        """Whether to drop a Block of `tp` read from `fetched_from` when its engine expects
        `expected`; if so the partition is read again from `expected`."""
        if fetched_from <= expected:
            return False
        tries = self.tries.get((tp, expected), 0)
        if tries >= GAP_RETRIES:
            log.warning(
                "partition %d: offsets %d to %d of %s are no longer on the broker; "
                "continuing from %d",
                tp.partition, expected, fetched_from - 1, tp.topic, fetched_from,
            )  # fmt: skip
            return False
        self.tries[(tp, expected)] = tries + 1
        self.counter.inc()
        log.info(
            "partition %d: records of %s read from offset %d while its engine expects %d: "
            "dropped, and read again from there",
            tp.partition, tp.topic, fetched_from, expected,
        )  # fmt: skip
        try:
            await consumer.seek(tp, expected)
        except Exception as exc:  # not assigned any more: its next owner seeks it
            log.info("partition %d: seek of %s to %d failed: %s", tp.partition, tp, expected, exc)
        return True

    def applied(self, tp: TP, expected: int) -> None:
        """The Block that `expected` waited for arrived."""
        if self.tries:
            self.tries.pop((tp, expected), None)
