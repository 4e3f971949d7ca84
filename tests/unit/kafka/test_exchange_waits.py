"""exactly_once: when an exchange commit is due between checkpoints
(streams/kafka/exchange_commits.py)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from streams.kafka.exchange_commits import EXCHANGE_COMMIT_S, EXCHANGE_WAIT_S
from streams.kafka.watermarks import SourceClocks
from tests.events_util import T0
from tests.unit.kafka.fakes import (
    IN,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def test_under_exactly_once_the_exchange_is_committed_between_checkpoints_while_it_waits():
    assignment = every_partition(2, (IN,))
    proc, _ = make_processor(assignment)
    proc.interval = proc.pause = 5.0  # as after a quick checkpoint
    proc.txn = object()

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        end = proc.last_checkpoint
        proc.last_input = end + 1.0  # input flowing
        proc.exchanged = {1}  # campaign records, marks or forwards sent since the commit
        soon = proc.last_commit + EXCHANGE_COMMIT_S + 0.01
        assert not proc.exchange_commit_due(soon), "nothing waits on a commit"
        proc.parts[1].engine.awaiting_figures = True  # windows held for figures
        assert proc.exchange_commit_due(soon)
        assert not proc.exchange_commit_due(proc.last_commit + EXCHANGE_COMMIT_S - 0.01)
        # Exchange commits move the exchange: checkpoints keep their interval.
        assert not proc.checkpoint_due(end + 4.9) and proc.checkpoint_due(end + 5.1)
        proc.exchanged = set()
        assert not proc.exchange_commit_due(soon), "nothing to publish"
        proc.exchanged = {1}
        proc.parts[1].engine.awaiting_figures = False
        # No input for a while: marks and progress left to send only move at commits.
        assert proc.exchange_commit_due(proc.last_input + EXCHANGE_WAIT_S + 0.1)
        # A source read a window past the event time its engine closes on: the marks that
        # close that window are sent, and count only once committed.
        part, now = proc.parts[1], soon
        part.clocks = SourceClocks(sources=2, idle_after_s=600.0)
        part.engine.cfg = SimpleNamespace(engine=SimpleNamespace(window_s=300.0))
        part.read_time = T0 + 1000.0
        assert proc.exchange_commit_due(now), "no mark from any source yet"
        part.clocks.advance(0, T0 + 1000.0, now)
        part.clocks.advance(1, T0 + 701.0, now)
        assert not proc.exchange_commit_due(now), "less than a window ahead"
        part.read_time = T0 + 1001.0
        assert proc.exchange_commit_due(now)
        proc.txn = None  # under at_least_once others read outputs at once: no commits
        proc.parts[1].engine.awaiting_figures = True
        assert not proc.exchange_commit_due(now)

    run_async(scenario())
