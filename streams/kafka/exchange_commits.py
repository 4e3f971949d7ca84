"""exactly_once: exchange commits, which move the campaign exchange and event-time marks
between checkpoints (docs/kafka.md, "Exchange commits between checkpoints").

A mixin of the Processor, beside Persistence (persistence.py), whose checkpoints take the
same commit lock.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from faust.types import TP

from streams.kafka.backpressure import source_lead

# Under exactly_once a window waits for three commits after its events are in: the
# sources' event-time marks', its request's, and the owners' figures'. While the exchange
# waits so, exchange commits, which write no state, come this often by default
# (`[worker] exchange_commit_s`; docs/kafka.md, "Exchange commits between checkpoints").
EXCHANGE_COMMIT_S = 0.25
# After this long without input, what is left to send only moves at commits; with
# exchange commits off, checkpoints come this often while the exchange waits.
EXCHANGE_WAIT_S = 1.0


def _failed(task: asyncio.Future | None) -> bool:
    return task is not None and task.done() and not task.cancelled() and bool(task.exception())


def _awaiting_marks(part: Any, now: float) -> bool:
    """Its source has been read a window or more past the event time its engine closes on
    (or the engine has no mark from some source yet): the marks that close that window are
    sent, and under exactly_once they count only once committed. At the start of a backlog
    the first windows waited for the interval's first commit, 5 s, and the input raced
    ahead meanwhile (docs/kafka.md, "The first commit sooner")."""
    if part.clocks is None or part.read_time == -math.inf:
        return False
    mark = part.clocks.watermark(now)
    return mark == -math.inf or source_lead(part.read_time, mark) >= part.engine.cfg.engine.window_s


class ExchangeCommits:
    """The Processor sets these in its __init__."""

    app: Any
    wm: Any
    txn: Any  # transactions.Transactions, or None under at_least_once
    parts: dict
    assigned: set[int]
    exchanged: set[int]  # partitions that sent exchange records since their last commit
    exchange_commit_s: float  # 0: no exchange commits
    last_commit: float  # of the last checkpoint or exchange commit
    last_input: float  # when records of the input topic were last applied
    closed: bool
    commit_lock: asyncio.Lock  # held by checkpoints and exchange commits
    committing: asyncio.Future | None  # the exchange commit task last started
    finishing: asyncio.Future | None  # the checkpoint last finished aside (persistence.py)

    def exchange_commit_due(self, now: float) -> bool:
        """Under exactly_once other workers and engines read this worker's outputs only
        once its transactions commit: the campaign exchange moves one step per commit, and
        the sources this worker reads go idle downstream only after their marks are
        committed (SourceClocks). So an exchange commit is due every `exchange_commit_s`
        (`[worker]`, 0: never) while some partition has sent exchange records since its
        last commit and the exchange waits (`_exchange_waits`)."""
        return (
            self.txn is not None
            and self.exchange_commit_s > 0
            and now - self.last_commit >= self.exchange_commit_s
            and bool(self.exchanged)
            and self._exchange_waits(now)
        )

    def start_exchange_commit(self) -> None:
        """An exchange commit in a task of its own, unless one is in flight: the engines
        go on meanwhile. Its commits are round trips to the broker, and with the
        processor's lock held they stopped the engines for about a tenth of a backlog's
        drain (docs/kafka.md, "Exchange commits beside the engines")."""
        if self.committing is None or self.committing.done():
            self.raise_failed_commit()
            self.last_commit = time.monotonic()  # due again only after this one
            self.committing = asyncio.ensure_future(self.exchange_commit())

    def raise_failed_commit(self) -> None:
        """Raises what the last exchange commit raised, every time: the worker stops, as
        it did when the commit ran inside the batch that asked for it. Raises what the
        last checkpoint finished aside raised, once, as its caller got it when it finished
        inline (persistence.py)."""
        if _failed(self.finishing):
            task, self.finishing = self.finishing, None
            raise task.exception()  # type: ignore[union-attr,misc]
        if _failed(self.committing):
            raise self.committing.exception()  # type: ignore[union-attr,misc]

    async def exchange_commit(self) -> None:
        """Commits the open transactions of the partitions that sent exchange records
        (campaign records, event-time marks, forwarded events) since their last commit,
        with the input offsets of their last checkpoint, and writes no state: the exchange
        moves on without a checkpoint (docs/kafka.md, "Exchange commits between
        checkpoints"). What a restart from that checkpoint sends again, the exchange takes
        twice without effect; every other output waits for the checkpoint
        (`Outputs._send`).

        It needs no processor lock: the engines may send more exchange records meanwhile,
        which this commit may publish too, and each is harmless there for the same
        reason. It holds the commit lock, which checkpoints take too."""
        async with self.commit_lock:
            if self.closed:
                return
            # Read under the commit lock: a checkpoint that ran first moved `committed`.
            offsets = {
                TP(topic, p): off
                for p in self.exchanged
                if p in self.assigned and p in self.parts
                for topic, off in self.parts[p].committed.items()
            }
            if not offsets:  # nothing read yet to name the transaction: the checkpoint will
                self.last_commit = time.monotonic()
                return
            # Those sent from here on are left for the next commit, even if this one
            # publishes them too.
            self.exchanged -= {tp.partition for tp in offsets}
            # No flush first: a transaction's commit waits for its own records (aiokafka
            # closes its open batches and waits for them), and a flush of every producer
            # while the engines send more took 0.3 s a commit.
            await self.txn.commit(offsets)  # type: ignore[union-attr]
            self.last_commit = time.monotonic()
            self.wm.exchange_commits.inc()

    def _exchange_waits(self, now: float) -> bool:
        """The campaign exchange waits on commits: an engine holds windows for campaign
        figures or waits for the marks that close its next window (`_awaiting_marks`), or
        no input came for EXCHANGE_WAIT_S (what is left to send only moves at commits)."""
        return now - self.last_input >= EXCHANGE_WAIT_S or any(
            p.engine.awaiting_figures or _awaiting_marks(p, now) for p in self.parts.values()
        )
