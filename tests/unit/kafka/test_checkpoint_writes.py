"""When a checkpoint writes state and when it must not: the group lease, the changelog's
acknowledgements, the final checkpoint (streams/kafka/persistence.py,
checkpoint_commits.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP

from streams.kafka import checkpoint
from streams.kafka.processor import Processor
from tests.unit.kafka.fakes import (
    IN,
    LOG,
    REP,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def test_a_worker_out_of_its_group_writes_no_state_and_still_drops_what_it_lost():
    # Regression (fault soak, at_least_once): a worker frozen past its session timeout
    # checkpointed its partitions on the revoke that followed, after the other worker had
    # taken them over; its writes deleted segments the new owner's manifest still named,
    # and a restart from the changelog stopped on "the changelog is incomplete".
    assignment = every_partition()
    proc, owned = make_processor(assignment)
    member = {"in": True}
    proc.group_lease = lambda: SimpleNamespace(
        holds=lambda: member["in"], out=lambda: not member["in"], session_timeout_s=6.0
    )
    withheld = lambda: proc.metrics.registry.get_sample_value("vigil_checkpoints_withheld_total")  # noqa: E731

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint()
        first = checkpoint.read_manifest(proc.table, IN, 1)
        assert first is not None and first.offsets == {IN: 2}
        await proc.on_batch(TP(IN, 1), record_block(2, 3))

        member["in"] = False  # the lease ran out: no state, no offsets
        await proc.checkpoint()
        await proc.checkpoint()
        assert checkpoint.read_manifest(proc.table, IN, 1) == first
        assert proc.app.consumer.ready_offsets == {TP(IN, 1): 2} and withheld() == 2
        assert proc.parts[1].dirty  # still to be written, should the lease come back

        await proc.on_revoked({TP(t, 1) for t in (IN, REP, LOG)})  # the group moved on
        assert checkpoint.read_manifest(proc.table, IN, 1) == first
        assert 1 not in proc.parts and owned() == 3 and withheld() == 3

        member["in"] = True  # back in the group: checkpoints are written again
        await proc.on_batch(TP(IN, 2), record_block(0))
        await proc.checkpoint()
        written = checkpoint.read_manifest(proc.table, IN, 2)
        assert written is not None and written.offsets == {IN: 1} and not proc.withholding

    run_async(scenario())


def _leased(proc: Processor, holds: list[bool], out: bool, timeout_s: float = 6.0) -> None:
    """A lease whose holds() answers `holds` in turn, then its last answer for good."""
    answers = iter(holds)
    last = {"v": holds[-1]}

    def held() -> bool:
        last["v"] = next(answers, last["v"])
        return last["v"]

    proc.group_lease = lambda: SimpleNamespace(
        holds=held, out=lambda: out, session_timeout_s=timeout_s
    )


def test_a_lease_lost_while_the_state_is_encoded_writes_nothing():
    # A worker frozen (SIGSTOP) after a checkpoint checked its lease and before it wrote.
    assignment = every_partition()

    async def scenario(holds: list[bool], out: bool, timeout_s: float = 6.0):
        proc, _ = make_processor(assignment)
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        _leased(proc, holds, out, timeout_s)
        try:
            await proc.checkpoint()
        except RuntimeError as exc:
            return proc, exc
        return proc, None

    # Out of the group by the time the state is encoded: nothing written or committed.
    proc, exc = run_async(scenario([True, False], out=True))
    assert exc is None and checkpoint.read_manifest(proc.table, IN, 1) is None
    assert proc.app.consumer.ready_offsets == {} and proc.withholding
    # In doubt, then a heartbeat is answered: written.
    proc, exc = run_async(scenario([True, False, False, True], out=False))
    assert exc is None and checkpoint.read_manifest(proc.table, IN, 1) is not None
    # In doubt for the whole session timeout: the worker stops rather than lose the
    # journal it took, and nothing is written.
    proc, exc = run_async(scenario([True, False], out=False, timeout_s=0.2))
    assert exc is not None and "session timeout" in str(exc)
    assert checkpoint.read_manifest(proc.table, IN, 1) is None


def test_a_changelog_record_not_acknowledged_fails_the_checkpoint_before_its_commit():
    assignment = every_partition()
    proc, _ = make_processor(assignment)
    proc.table.failing = RuntimeError("NotEnoughReplicas")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        with pytest.raises(RuntimeError, match="changelog records were not delivered"):
            await proc.checkpoint()
        assert proc.app.consumer.ready_offsets == {} and proc.changelog_behind

    run_async(scenario())


def test_nothing_is_written_after_the_final_checkpoint():
    # The stop is marked clean right after the final checkpoint (app.py): a checkpoint
    # still waiting for the lock then must not write what the marker would not cover.
    assignment = every_partition()
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint(final=True)
        assert proc.closed
        written = checkpoint.read_manifest(proc.table, IN, 1)
        await proc.on_batch(TP(IN, 1), record_block(2))
        await proc.checkpoint()
        assert checkpoint.read_manifest(proc.table, IN, 1) == written
        assert not proc.withholding  # closed, not in doubt: nothing said

    run_async(scenario())


def test_a_checkpoint_cut_short_marks_the_changelog_behind_for_the_rest_of_the_run():
    # The worker marks a clean stop (stale_state.mark_clean_stop) only when every table
    # write of its checkpoints was flushed to the changelog.
    assignment = every_partition()
    proc, _ = make_processor(assignment)
    flushes = {"n": 0, "fail_at": 0}

    async def flush() -> None:
        flushes["n"] += 1
        if flushes["n"] == flushes["fail_at"]:
            raise RuntimeError("broker gone")

    proc.app.producer.flush = flush

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint()
        assert not proc.changelog_behind and flushes["n"] == 2  # sinks, then the changelog
        await proc.on_batch(TP(IN, 1), record_block(2))
        flushes["fail_at"] = flushes["n"] + 2  # the flush after the table writes fails
        with pytest.raises(RuntimeError):
            await proc.checkpoint()
        assert proc.changelog_behind
        # A later checkpoint gets through, but what the failed flush dropped stays lost:
        # only a rebuild from the changelog at the next start makes the two agree.
        await proc.checkpoint()
        assert proc.changelog_behind and not proc.parts[1].dirty

    run_async(scenario())
