"""The processor's ownership of its assignment and the batches it takes
(streams/kafka/processor.py)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import zlib

import pytest
from faust.types import TP

from streams.contract import _decode
from streams.kafka import checkpoint
from streams.kafka.block import Block
from streams.kafka.checkpoint import UnusableCheckpoint
from tests.unit.kafka.fakes import (
    IN,
    LOG,
    REP,
    FakeTable,
    block_of,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def test_a_checkpoint_placed_by_another_partitioner_stops_the_worker_in_one_line():
    """`[kafka] input_partitioner` decides which partition owns an account; a checkpoint
    written under the other one holds accounts that now belong elsewhere."""
    assignment = every_partition()
    part = zlib.crc32(b"acct_1") % 4  # where a librdkafka client keyed by account put it
    table = FakeTable()

    async def scenario() -> None:
        proc, _ = make_processor(assignment, repartition=True, partitioner="crc32", table=table)
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, part), record_block(0, 1))
        assert proc.parts[part].engine.lines and not proc.app.producer.sent  # none forwarded
        await proc.checkpoint(final=True)

        again, _ = make_processor(assignment, repartition=True, partitioner="crc32", table=table)
        again.on_assigned(assignment)
        await again.on_batch(TP(IN, part), record_block(2))
        assert len(again.parts[part].engine.lines) == 3  # resumed, two from the journal

        told_otherwise, _ = make_processor(assignment, repartition=True, table=table)
        told_otherwise.on_assigned(assignment)
        with pytest.raises(UnusableCheckpoint) as err:
            await told_otherwise.on_batch(TP(IN, part), record_block(2))
        msg = str(err.value)
        assert "\n" not in msg and "placed by the crc32 partitioner" in msg
        assert "kafka.input_partitioner is murmur2; set it back to crc32" in msg
        assert "--discard-unreadable-state" in msg

        emptied, _ = make_processor(
            assignment, repartition=True, table=table, discard_unreadable=True
        )
        emptied.on_assigned(assignment)
        await emptied.on_batch(TP(IN, part), record_block(2))
        assert emptied.wm.state_discarded._value.get() == 1
        # Opened empty (the batch, read from past the committed offset, waits for a refetch).
        assert emptied.parts[part].engine.lines == []

    run_async(scenario())


def test_processor_owns_its_assignment_and_refuses_batches_after_a_revoke():
    assignment = every_partition()
    proc, owned = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        # Owned from the assignment on, before any batch: an idle partition counts too.
        assert owned() == 4 and not proc.parts
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        assert proc.parts[1].engine.lines and proc.parts[1].next_offsets == {IN: 2}

        # Revoked: checkpointed, dropped and no longer owned, although the client still
        # lists the partition as assigned until the group's next assignment.
        await proc.on_revoked({TP(t, 1) for t in (IN, REP, LOG)})
        assert owned() == 3 and 1 not in proc.parts
        restored = checkpoint.read(proc.table, IN, 1)
        assert restored is not None and restored[1].offsets == {IN: 2}
        # A batch that waited for the lock during the revoke must not reopen the engine.
        await proc.on_batch(TP(IN, 1), record_block(2))
        assert 1 not in proc.parts

        # Assigned again: the engine resumes from the checkpoint on its next batch.
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(1, 2))
        assert proc.parts[1].next_offsets == {IN: 3}
        assert len(proc.parts[1].engine.lines) == 3  # offset 1 skipped as already applied

    run_async(scenario())


def test_the_engine_gets_the_columns_decoded_in_the_consumer_thread_while_rows_are_whole():
    assignment = every_partition()
    proc, _ = make_processor(assignment)

    def block(first: int, limit: int = 4096) -> Block:
        b = record_block(first, first + 1)
        b.columns = (limit, _decode.decode(b.values, limit))
        return b

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), block(0))
        engine = proc.parts[1].engine
        assert engine.columns == _decode.decode([b'{"account_id": "acct_1"}'] * 2, 4096)
        await proc.on_batch(TP(IN, 1), block(1))  # offset 1 already applied: rows cut
        assert engine.columns is None and len(engine.lines) == 3
        await proc.on_batch(TP(IN, 1), block(3, limit=100))  # another line limit
        assert engine.columns is None and len(engine.lines) == 5

    run_async(scenario())


def test_a_batch_fetched_before_a_rebalance_is_dropped_even_if_the_partition_returns():
    # Regression: under exactly_once, a batch that waited for the lock through a rebalance
    # was applied to the engine restored from an older checkpoint when the partition came
    # back to the same worker; the records between that checkpoint and the stale batch,
    # fetched again after the seek, were then skipped as already applied.
    assignment = every_partition()
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        async with proc.lock:  # a checkpoint or rebalance holds the lock meanwhile
            stale = asyncio.ensure_future(proc.on_batch(TP(IN, 1), record_block(5, 6)))
            await asyncio.sleep(0)
            proc.app.consumer_generation_id += 1  # the group rebalanced
            proc.on_assigned(assignment)
        await stale
        assert proc.parts[1].next_offsets == {IN: 2}  # not 7: offsets 2..4 still to come
        await proc.on_batch(TP(IN, 1), record_block(2, 3, 4, 5, 6))
        assert proc.parts[1].next_offsets == {IN: 7}
        assert len(proc.parts[1].engine.lines) == 7

    run_async(scenario())


def test_worker_logging_stays_at_its_level():
    # Regression: Faust's terminal spinner set the root logger to DEBUG, so every debug
    # call in aiokafka's send and fetch paths built a LogRecord, a few percent of the
    # worker's time. Run in a child: Faust's logging setup replaces the root handlers.
    code = """
import logging
from streams.core.config import VigilConfig
from streams.kafka.app import build_worker, faust_worker
from streams.kafka.settings import WorkerSettings
s = WorkerSettings()
faust_worker(build_worker(VigilConfig(), s).app, s)._setup_logging()
print(logging.getLogger("aiokafka.producer.producer").getEffectiveLevel())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(out.stdout.split()[-1]) == logging.WARNING


def test_tombstones_are_dead_lettered_and_blank_values_reach_the_decoder():
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment)
    good = b'{"account_id": "acct_1"}'

    def rejected() -> float | None:
        return proc.metrics.registry.get_sample_value(
            "vigil_events_rejected_total", {"reason": "malformed_json"}
        )

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), block_of([good, None, b"", b" \n", None, good]))
        # Blank values are bytes: the engine's decoder rejects them with a reason.
        assert proc.parts[0].engine.lines == [good, b"", b" \n", good]
        dead = [s for s in proc.app.producer.sent if s[0] == "t-dead"]
        assert [(s[2], dict(s[5])["vigil-reason"]) for s in dead] == [
            (b"", b"malformed_json"),
            (b"", b"malformed_json"),
        ]
        assert rejected() == 2 and proc.consumed == 6
        await proc.on_batch(TP(IN, 0), block_of([None], first=6))  # only a tombstone
        assert rejected() == 3 and len(proc.parts[0].engine.lines) == 4

    run_async(scenario())
