"""How long a checkpoint puts off the next (checkpoint_commits.checkpoint_pause)."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from streams.kafka.checkpoint_commits import EOS_MAX_PAUSE_S, checkpoint_pause
from streams.kafka.processor import Processor
from tests.unit.kafka.fakes import (
    IN,
    FakeTransactions,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def _slow_checkpoints() -> tuple[Processor, set[TP]]:
    """A processor on four partitions whose checkpoints take 0.05 s a flush, against an
    interval of 0.1 s: slow enough to defer the next one."""
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment)
    proc.interval = 0.1

    async def slow_flush() -> None:
        await asyncio.sleep(0.05)

    proc.app.producer.flush = slow_flush
    return proc, assignment


def test_a_slow_checkpoint_defers_the_next_so_checkpoints_stay_a_tenth_of_the_time():
    assert checkpoint_pause(5.0, 0.05) == 5.0  # live: the interval
    assert checkpoint_pause(5.0, 1.5) == pytest.approx(13.5)  # a backlog's big journal
    assert checkpoint_pause(5.0, 20.0) == 30.0  # bounds what a crash reads again
    assert checkpoint_pause(5.0, 20.0, defer=False) == 5.0  # _finish says when
    proc, assignment = _slow_checkpoints()

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.settled = True  # past the first checkpoint after it, which never defers
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint()  # two flushes: at least 0.1 s
        end = proc.last_checkpoint
        assert proc.pause >= 0.9
        assert not proc.checkpoint_due(end + 0.5)
        assert proc.checkpoint_due(end + proc.pause)
        # Under exactly_once alerts wait for the checkpoint and exchange commits move the
        # exchange meanwhile: the pause is bounded by EOS_MAX_PAUSE_S.
        proc.txn = object()
        assert not proc.checkpoint_due(end + 0.5)
        assert proc.checkpoint_due(end + proc.pause)
        proc.pause = 25.0
        assert not proc.checkpoint_due(end + EOS_MAX_PAUSE_S - 0.1)
        assert proc.checkpoint_due(end + EOS_MAX_PAUSE_S)
        # With exchange commits off only checkpoints move the exchange: the interval holds.
        proc.exchange_commit_s = 0.0
        assert proc.checkpoint_due(end + 0.11)

    run_async(scenario())


def test_a_slow_checkpoint_that_moved_no_input_offset_does_not_defer_the_next():
    """A restarted worker's first checkpoint writes its rebuilt state before it has read
    anything again: deferred after it, the next came too late to cover what the worker
    then read again, and a worker killed in a row read that again each time."""
    proc, assignment = _slow_checkpoints()

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.settled = True  # past the first checkpoint (the next test)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint()
        assert proc.pause >= 0.9  # it read on: deferred
        proc.parts[1].dirty = True  # state to write, no input read since
        await proc.checkpoint()
        assert proc.pause == proc.interval
        assert proc.checkpoint_due(proc.last_checkpoint + 0.11)
        await proc.on_batch(TP(IN, 1), record_block(2, 3))
        await proc.checkpoint()
        assert proc.pause >= 0.9

    run_async(scenario())


@pytest.mark.parametrize("exactly_once", [False, True])
def test_the_first_checkpoint_after_an_assignment_defers_the_next_only_under_exactly_once(
    exactly_once,
):
    """On three brokers a worker's first checkpoint took 0.9 s (its producer's connections
    set up), which put off the next by 8 s: a worker killed meanwhile read everything
    since its start again. Under exactly_once nothing read again is published twice."""
    proc, assignment = _slow_checkpoints()
    if exactly_once:
        proc.txn = FakeTransactions()

    async def scenario() -> None:
        for _ in range(2):  # each assignment has its first checkpoint
            proc.on_assigned(assignment)
            assert proc.pause == proc.interval
            await proc.on_batch(TP(IN, 1), record_block(proc.positions.get(TP(IN, 1), 0)))
            await proc.checkpoint()
            assert (proc.pause > proc.interval) is exactly_once
            await proc.on_batch(TP(IN, 1), record_block(proc.positions[TP(IN, 1)]))
            await proc.checkpoint()
            assert proc.pause > proc.interval  # from the second on: deferred

    run_async(scenario())
