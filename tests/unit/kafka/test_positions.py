"""Blocks that do not start where the engine is: dropped and read again, or taken as
records gone from the broker (streams/kafka/positions.py)."""

from __future__ import annotations

from faust.types import TP

from streams.kafka.block import Block
from streams.kafka.positions import GAP_RETRIES
from tests.unit.kafka.fakes import (
    IN,
    REP,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def _fetched(first: int, until: int, *offsets: int) -> Block:
    """A Block as the fetch path hands it over: read from `first`, the position at `until`."""
    block = record_block(*offsets) if offsets else Block.empty()
    block.fetched_from, block.until = first, until
    return block


def test_a_batch_read_from_past_the_engine_is_dropped_and_read_again():
    # Regression: Faust resumes a partition's fetching just before it seeks the partition
    # to its committed offset after a rebalance. A fetch in between read from where the
    # previous assignment left the position (2584 where the checkpoint said 2364); applied,
    # it moved the engine past 2364..2583, which the seek then read again and skipped as
    # applied: 220 events lost under exactly_once.
    assignment = every_partition()
    proc, _ = make_processor(assignment)
    refetched = lambda: proc.metrics.registry.get_sample_value("vigil_batches_refetched_total")  # noqa: E731

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _fetched(0, 2, 0, 1))
        await proc.on_batch(TP(IN, 1), _fetched(5, 7, 5, 6))  # 2..4 not read yet
        assert proc.parts[1].next_offsets == {IN: 2} and len(proc.parts[1].engine.lines) == 2
        assert proc.app.consumer.sought == [(TP(IN, 1), 2)] and refetched() == 1
        await proc.on_batch(TP(IN, 1), _fetched(2, 7, 2, 3, 4, 5, 6))
        assert proc.parts[1].next_offsets == {IN: 7} and len(proc.parts[1].engine.lines) == 7

    run_async(scenario())


def test_a_fetch_of_markers_only_moves_the_engine_on_without_a_refetch():
    # Under read_committed a fetch may hold only transaction markers; the next one starts
    # after them, and must not look like a gap.
    assignment = every_partition()
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(REP, 2), _fetched(0, 3, 0, 1, 2))
        await proc.on_batch(TP(REP, 2), _fetched(3, 4))  # a commit marker at 3
        await proc.on_batch(TP(REP, 2), _fetched(4, 6, 4, 5))
        assert proc.parts[2].next_offsets == {REP: 6} and len(proc.parts[2].engine.lines) == 5
        assert proc.app.consumer.sought == []

    run_async(scenario())


def test_a_gap_that_keeps_coming_back_is_taken_as_records_gone_from_the_broker():
    # Records removed by retention while the worker was down: the broker answers a read
    # from the engine's offset with the log's new start. After GAP_RETRIES reads the
    # worker goes on from there rather than asking forever.
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), _fetched(0, 1, 0))
        for _ in range(GAP_RETRIES + 1):
            await proc.on_batch(TP(IN, 0), _fetched(50, 52, 50, 51))
        assert len(proc.app.consumer.sought) == GAP_RETRIES
        assert proc.parts[0].next_offsets == {IN: 52} and len(proc.parts[0].engine.lines) == 3

    run_async(scenario())
