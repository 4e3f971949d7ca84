"""Which input partitions the consumer group has read to their end.

A source that sent no mark for `source_idle_s` may be empty or drained, and then it must
stop holding back the windows of the engines it forwards to; or its owner may just not have
got to its new records yet (a rebalance, a restart rebuilding state, a commit still open),
and then closing windows without it sends its records to too_late when they come. Only the
input partition's offsets tell the two apart: the records of a partition whose committed
offset has reached its end have all been read, and their forwards written (the checkpoint
flushes them before it commits, or commits them in the same transaction). The worker's timer
asks for both offsets while some engine has a silent source (`DrainedReader`), and each
engine's clocks take the answer as it arrives (`SourceClocks.confirm_drained`).

The questions run in a task of their own, so a broker slow to answer never holds the timer
that sends the marks. An answer counts from the moment before the end offsets were asked
for, so a record written after that is never taken as read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)

# How long one reading may take before it counts as failed (silence alone then decides).
TIMEOUT_S = 10.0
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Drained:
    asked_at: float  # time.monotonic() before the end offsets were asked for
    sources: dict[int, int] | None  # drained partition -> its end; None: could not be read


async def read_drained(consumer: Any, topic: str, sources: int) -> Drained:
    """The input partitions of `topic` whose every record the group has committed.

    End offsets first, then the committed ones: a commit that covers an end read earlier
    covers every record written before `asked_at`. A partition that never had a record is
    drained with no commit; one with records is not until the group commits them."""
    tps = [TP(topic, p) for p in range(sources)]
    asked_at = time.monotonic()
    ends = await consumer.highwaters(*tps)  # read_committed: the last stable offset
    committed = await consumer.committed_offsets(tps)
    done = {
        tp.partition: ends[tp] for tp in tps if tp in ends and (committed.get(tp) or 0) >= ends[tp]
    }
    return Drained(asked_at, done)


class DrainedReader:
    """One reading at a time, started by `poll` when wanted; its answer goes to `on_answer`
    as soon as it arrives. Not at the next poll: an answer a second old is void once any
    source comes back meanwhile (`RESUMED_AFTER_S`), and with sources coming back every
    second or so (commits of several workers under exactly_once) no answer would count."""

    def __init__(
        self,
        consumer: Any,
        topic: str,
        sources: int,
        on_answer: Callable[[Drained], None],
        readings: Any = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.sources = sources
        self.on_answer = on_answer
        self.readings = readings  # vigil_input_offset_readings_total, by outcome
        self._task: asyncio.Task | None = None
        self._warned = -float("inf")

    def poll(self, wanted: bool) -> None:
        """Starts a reading when `wanted` (some engine has a silent source) and none runs."""
        if wanted and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            answer = await asyncio.wait_for(
                read_drained(self.consumer, self.topic, self.sources), TIMEOUT_S
            )
        except Exception as exc:  # the broker's answer, whatever it is, must not stop the timer
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY_S:
                self._warned = now
                log.warning(
                    "could not read the input partitions' offsets (%s: %s); silent sources "
                    "go idle on source_idle_s alone until they can be read",
                    type(exc).__name__,
                    exc,
                )
            answer = Drained(now, None)  # no sources: the time is never compared
        if self.readings is not None:
            self.readings.labels("ok" if answer.sources is not None else "failed").inc()
        self.on_answer(answer)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
