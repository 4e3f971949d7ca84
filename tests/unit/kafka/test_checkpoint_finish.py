"""A periodic checkpoint finishes beside the engines: once its state is taken, encoding
and writing it, the wait for its records and its commit run in a task of their own
(CheckpointCommits._finish_aside_task), and what the engines do meanwhile goes into the
next checkpoint, never into this one."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest
from faust.types import TP

from streams.kafka import checkpoint, checkpoint_commits
from tests.unit.kafka.fakes import IN, REP, every_partition, make_processor, record_block, run_async
from tests.unit.kafka.test_exchange_commits import (
    CAMPAIGN,
    BlockingTransactions,
    _eos_processor,
)


def _alert(account: str) -> SimpleNamespace:
    alert = SimpleNamespace(account_id=account, to_json=lambda: b"{}")
    return SimpleNamespace(alerts=[alert], shadow_alerts=[], dead_letters=[], snapshots=[])


async def _manifest(proc, partition: int) -> checkpoint.Manifest:
    """The partition's manifest once the checkpoint finishing aside has written it."""
    for _ in range(400):
        manifest = checkpoint.read_manifest(proc.table, IN, partition)
        if manifest is not None:
            return manifest
        await asyncio.sleep(0.005)
    raise AssertionError(f"no checkpoint of partition {partition} written")


def test_exactly_once_commits_the_offsets_its_state_covers_while_the_engines_go_on():
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()
    sent = proc.app.producer.sent

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0, 1))
        await proc._emit(_alert("acct_1"), TP(IN, 0))  # held for the checkpoint
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(2)), 1.0)  # finished aside
        assert proc.finishing is not None and not proc.finishing.done()
        assert proc.commit_lock.locked() and txn.commits == []
        assert [a[0] for a in sent] == ["t-alerts"], "the held alert joins this checkpoint"
        assert (await _manifest(proc, 0)).offsets == {IN: 3}

        # The engines go on: a batch and its alert while the commit waits on the broker.
        assert not proc.checkpoint_due(1e12), "a second checkpoint beside the first"
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(3, 4)), 1.0)
        await proc._emit(_alert("acct_2"), TP(IN, 0))
        assert len(proc.held) == 1 and [a[0] for a in sent] == ["t-alerts"]
        assert proc.parts[0].dirty and 0 in proc.touched  # for the next checkpoint

        txn.release.set()
        await asyncio.wait_for(proc.finished(), 1.0)
        # Committed at the offsets its state covers, not those of the batch after it.
        assert txn.commits == [{TP(IN, 0): 3}]
        assert proc.parts[0].committed == {IN: 3} and not proc.commit_lock.locked()
        await proc.checkpoint()
        assert txn.commits[-1] == {TP(IN, 0): 5} and proc.held == []

    run_async(scenario())


def test_at_least_once_commits_the_offsets_its_state_covers_while_the_engines_go_on():
    assignment = every_partition(2, (IN, REP))
    proc, _ = make_processor(assignment)
    gate = asyncio.Event()
    commits: list[dict] = []
    consumer = proc.app.consumer

    async def commit() -> bool:
        await gate.wait()
        commits.append(dict(consumer.ready_offsets))
        return True

    consumer.commit = commit

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 1), record_block(2)), 1.0)
        assert proc.finishing is not None and not proc.finishing.done()
        await asyncio.wait_for(proc.on_batch(TP(IN, 1), record_block(3)), 1.0)
        gate.set()
        await asyncio.wait_for(proc.finished(), 1.0)
        assert commits == [{TP(IN, 1): 3}] and proc.parts[1].dirty

    run_async(scenario())


def test_exactly_once_without_exchange_commits_finishes_inside_the_batch():
    # Nothing is held then: outputs the engines sent beside the commit would join its
    # transaction and be published with offsets that do not cover their events.
    proc = _eos_processor()
    proc.exchange_commit_s = 0.0
    proc.txn = txn = BlockingTransactions()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        batch = asyncio.ensure_future(proc.on_batch(TP(IN, 0), record_block(1)))
        await asyncio.sleep(0.05)
        assert not batch.done() and proc.finishing is None
        txn.release.set()
        await asyncio.wait_for(batch, 1.0)
        assert txn.commits == [{TP(IN, 0): 2}]

    run_async(scenario())


def test_exchange_commits_and_a_revoke_wait_for_the_checkpoint_finishing():
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc.on_batch(TP(IN, 1), record_block(0))
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(1)), 1.0)  # finishing aside
        await asyncio.sleep(0.01)  # its commit waits on the broker
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        assert proc.exchanged == {0}, "sent after the checkpoint's commit began"
        proc.last_commit = 0.0
        proc.start_exchange_commit()
        revoke = asyncio.ensure_future(proc.on_revoked({TP(t, 1) for t in (IN, REP)}))
        await asyncio.sleep(0.05)
        assert not revoke.done() and txn.commits == []
        txn.release.set()
        await asyncio.wait_for(revoke, 1.0)
        await asyncio.wait_for(proc.finished(), 1.0)
        await asyncio.wait_for(proc.committing, 1.0)
        # The checkpoint, then the revoke's checkpoint of partition 1 and the exchange
        # commit, in the order they asked for the commit lock.
        assert txn.commits[0] == {TP(IN, 0): 2, TP(IN, 1): 1}
        assert {TP(IN, 0): 2} in txn.commits[1:] and 1 not in proc.parts

    run_async(scenario())


def test_a_failed_finish_stops_the_next_batch_once_and_its_partitions_are_written_again():
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()
    txn.fail = RuntimeError("broker said no")

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(1)), 1.0)
        assert not proc.parts[0].dirty
        txn.release.set()
        await asyncio.sleep(0.01)
        assert proc.parts[0].dirty and not proc.commit_lock.locked()
        with pytest.raises(RuntimeError, match="broker said no"):
            await proc.on_batch(TP(IN, 0), record_block(2))
        # Raised once, as the checkpoint's caller got it when it finished inline.
        txn.fail = None
        await proc.checkpoint()
        assert txn.commits == [{TP(IN, 0): 2}]

    run_async(scenario())


def test_the_engines_go_on_while_a_checkpoints_state_is_encoded(monkeypatch):
    # Encoding a backlog's journal took up to about 1 s a checkpoint under the processor's
    # lock; now only taking the state does, and what the engines apply meanwhile goes
    # into the next checkpoint.
    assignment = every_partition(2, (IN, REP))
    proc, _ = make_processor(assignment)
    gate, encoding = threading.Event(), threading.Event()
    encode = checkpoint_commits._encode

    def held_encode(row):
        encoding.set()
        assert gate.wait(5.0)
        return encode(row)

    monkeypatch.setattr(checkpoint_commits, "_encode", held_encode)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 1), record_block(2)), 1.0)
        assert await asyncio.get_running_loop().run_in_executor(None, encoding.wait, 5.0)
        await asyncio.wait_for(proc.on_batch(TP(IN, 1), record_block(3)), 1.0)
        assert len(proc.parts[1].engine.lines) == 4, "applied while the state is encoded"
        assert checkpoint.read_manifest(proc.table, IN, 1) is None
        gate.set()
        await asyncio.wait_for(proc.finished(), 2.0)
        assert checkpoint.read_manifest(proc.table, IN, 1).offsets == {IN: 3}
        # Record 3 is in no journal yet, and its partition waits for the next checkpoint.
        assert len(proc.parts[1].engine.fresh) == 1 and proc.parts[1].dirty

    run_async(scenario())


def test_a_partition_counts_as_uncheckpointed_until_the_commit_that_publishes_its_alerts():
    """`vigil_uncheckpointed_partitions` reads 0 only once what the engines did is
    committed: a test reading a worker's alerts as read_committed waits for it (the ext-a
    runs that read them before their transaction committed, docs/kafka.md)."""
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()

    def uncheckpointed() -> float | None:  # as scraped
        return proc.metrics.registry.get_sample_value("vigil_uncheckpointed_partitions")

    async def scenario() -> None:
        assert uncheckpointed() == 0
        await proc.on_batch(TP(IN, 0), record_block(0, 1))
        await proc._emit(_alert("acct_1"), TP(IN, 0))
        assert uncheckpointed() == 1
        await proc.on_batch(TP(IN, 1), record_block(0))
        assert uncheckpointed() == 2
        proc.interval, proc.last_checkpoint = 0.0, 0.0
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(2)), 1.0)  # finished aside
        assert not proc.parts[0].dirty and 0 not in proc.touched
        assert uncheckpointed() == 2, "taken, but not committed"
        txn.release.set()
        await asyncio.wait_for(proc.finished(), 1.0)
        assert txn.commits and uncheckpointed() == 0

    run_async(scenario())
