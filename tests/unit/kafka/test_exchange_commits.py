"""exactly_once: what an exchange commit publishes between checkpoints, what it leaves to
the checkpoint (streams/kafka/outputs.py, ExchangeCommits.exchange_commit), and forwarded
events applied once (streams/kafka/forwards.py)."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest
from faust.types import TP

from streams.kafka import checkpoint
from streams.kafka.block import Block
from streams.kafka.bundles import BUNDLE_HEADER, from_header, pack
from streams.kafka.exchange_commits import EXCHANGE_WAIT_S
from streams.kafka.forwards import fresh
from streams.kafka.processor import Topics
from tests.unit.kafka.fakes import (
    IN,
    REP,
    FakeTransactions,
    every_partition,
    make_processor,
    record_block,
    run_async,
)

CAMPAIGN = "t-campaign"


def _eos_processor():
    assignment = every_partition(2, (IN, REP, CAMPAIGN))
    proc, _ = make_processor(assignment)
    proc.topics = Topics(IN, REP, "t-alerts", "t-dead", "t-snapshots", campaign=CAMPAIGN)
    proc.txn = FakeTransactions()
    proc.on_assigned(assignment)
    return proc


def test_alerts_and_dead_letters_wait_for_the_checkpoint_the_exchange_does_not():
    proc = _eos_processor()
    sent = proc.app.producer.sent

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0, 1))
        await proc.on_batch(TP(IN, 1), record_block(0))
        alert = SimpleNamespace(account_id="acct_1", to_json=lambda: b"{}")
        out = SimpleNamespace(alerts=[alert], shadow_alerts=[], dead_letters=[], snapshots=[])
        await proc._emit(out, TP(IN, 0))
        await proc._dead_letter(b"x", "bad_json", "detail", TP(IN, 0))
        assert sent == [], "an alert or dead letter went out before the checkpoint"
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)  # a request
        await proc._send(REP, None, b"", [], 1, source=0)  # an event-time mark
        await proc._send(REP, b"acct_9", b'{"account_id": "acct_9"}', [], 0, source=1)
        assert [a[0] for a in sent] == [CAMPAIGN, REP, REP]
        assert proc.exchanged == {0, 1}

        # The exchange commit, at the offsets the partitions' last checkpoint covers (none
        # yet: where each was first read from), not the ones read since.
        await proc.exchange_commit()
        assert proc.txn.commits == [{TP(IN, 0): 0, TP(IN, 1): 0}]
        assert proc.exchanged == set()
        assert [a[0] for a in sent] == [CAMPAIGN, REP, REP], "nothing held was released"

        # The checkpoint sends what was held, then commits every partition's offsets.
        await proc.checkpoint()
        topics = [a[0] for a in sent]
        assert topics[:3] == [CAMPAIGN, REP, REP] and "t-alerts" in topics[3:]
        assert "t-dead" in topics[3:] and proc.held == []
        assert proc.txn.commits[-1] == {TP(IN, 0): 2, TP(IN, 1): 1}
        alert_txn = next(a[-1] for a in sent if a[0] == "t-alerts")
        assert alert_txn == "txn-0", "a held output joins its own partition's transaction"

        # Later exchange commits repeat the checkpoint's offsets, not the newer ones read.
        await proc.on_batch(TP(IN, 0), record_block(2, 3))
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        await proc.exchange_commit()
        assert proc.txn.commits[-1] == {TP(IN, 0): 2}

    run_async(scenario())


def test_a_leaving_partition_releases_only_its_own_held_outputs():
    proc = _eos_processor()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc.on_batch(TP(IN, 1), record_block(0))
        await proc._dead_letter(b"a", "bad_json", "", TP(IN, 0))
        await proc._dead_letter(b"b", "bad_json", "", TP(IN, 1))
        await proc.checkpoint(partitions={1}, final=True)
        released = [a[2] for a in proc.app.producer.sent if a[0] == "t-dead"]
        assert released == [b"b"]
        assert [source for source, _ in proc.held] == [0]

    run_async(scenario())


def test_under_at_least_once_nothing_is_held():
    assignment = {TP(IN, 0)}
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc._dead_letter(b"a", "bad_json", "", TP(IN, 0))
        assert [a[0] for a in proc.app.producer.sent] == ["t-dead"] and proc.held == []
        assert not proc.exchange_commit_due(proc.last_commit + 60.0)

    run_async(scenario())


# -- forwarded events -------------------------------------------------------------------


def _value(offset: int) -> bytes:
    return b'{"account_id": "acct_%d"}' % offset


def _forwards(first: int, *origins: tuple[int, int]) -> Block:
    """Events forwarded one record each, as workers before bundles sent them."""
    n = len(origins)
    headers = [(("k", b"v"), from_header(s, o)) for s, o in origins]
    values = [_value(o) for _, o in origins]
    return Block(list(range(first, first + n)), [None] * n, values, headers)


def _bundled(first: int, origins: list[tuple[int, int]], limit: int = 1 << 20) -> Block:
    """The same events in bundles: one per run of a source, each at most `limit` bytes."""
    records: list[tuple[bytes, tuple]] = []
    i = 0
    while i < len(origins):
        j = i
        while j < len(origins) and origins[j][0] == origins[i][0]:
            j += 1
        at = [o for _, o in origins[i:j]]
        for value, header in pack(origins[i][0], at, [_value(o) for o in at], limit):
            records.append((value, ((BUNDLE_HEADER, header),)))
        i = j
    n = len(records)
    return Block(
        list(range(first, first + n)), [None] * n, [r[0] for r in records], [r[1] for r in records]
    )


def _oracle(origins: list[tuple[int, int]], applied: dict[int, int]) -> list[int]:
    """Which events to keep, one at a time: each source's offsets must only go up."""
    keep = []
    for i, (source, offset) in enumerate(origins):
        if offset >= applied.get(source, -1):
            applied[source] = offset + 1
            keep.append(i)
    return keep


def test_copies_of_forwards_are_dropped_per_source_in_order():
    applied: dict[int, int] = {}
    kept, again = fresh(_bundled(0, [(0, 10), (1, 4), (0, 11)]), applied)
    assert len(kept) == 3 and again == 0 and applied == {0: 12, 1: 5}
    # Source 0 restored from a checkpoint at offset 10 forwards 10 and 11 again, then 12,
    # bundled otherwise than the first time; a mark (no origin) is kept.
    block = _bundled(3, [(0, 10), (0, 11), (0, 12), (1, 5)], limit=1)
    block.headers.append(())
    block.offsets.append(9)
    block.keys.append(None)
    block.values.append(b"")
    kept, again = fresh(block, applied)
    assert again == 2 and kept.values == [_value(12), _value(5), b""]
    assert kept.offsets == [5, 6, 9] and applied == {0: 13, 1: 6}


def test_forwards_one_record_each_from_before_bundles_are_still_applied_once():
    # What an older worker left in the topic when the group was upgraded.
    applied: dict[int, int] = {0: 11}
    kept, again = fresh(_forwards(0, (0, 10), (1, 4), (0, 11)), applied)
    assert again == 1 and kept.offsets == [1, 2] and applied == {0: 12, 1: 5}


def test_fresh_keeps_what_judging_each_event_alone_keeps():
    """For copies, restarts, interleaved sources and offsets below what was applied, in
    bundles of any size, `fresh` keeps the events a one-at-a-time reading keeps and leaves
    `applied` where it does."""
    rng = random.Random(23)
    for trial in range(400):
        origins = []
        next_of = {s: rng.randrange(0, 50) for s in range(4)}
        for _ in range(rng.randrange(1, 60)):
            s = rng.randrange(4)
            if rng.random() < 0.1:  # a restored source forwards again from further back
                next_of[s] = max(0, next_of[s] - rng.randrange(1, 10))
            origins.append((s, next_of[s]))
            next_of[s] += rng.randrange(1, 3)
        block = _bundled(0, origins, limit=rng.choice([1, 60, 200, 1 << 20]))
        start = {s: rng.randrange(-1, 40) for s in range(4) if rng.random() < 0.7}
        applied, reference = dict(start), dict(start)
        kept, again = fresh(block, applied)
        want = _oracle(origins, reference)
        assert kept.values == [_value(origins[i][1]) for i in want], trial
        assert again == len(origins) - len(want) and applied == reference, trial


def test_the_engine_applies_a_forward_once_across_its_checkpoint():
    assignment = every_partition(2, (IN, REP))
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(REP, 1), _bundled(0, [(0, 100), (0, 101)]))
        assert len(proc.parts[1].engine.lines) == 2
        await proc.checkpoint()
        restored = checkpoint.read(proc.table, IN, 1)
        assert restored is not None and restored[0]["forwards_applied"] == {0: 102}
        # Reopened from that checkpoint (the partition left and came back): the copies a
        # restored source forwards again are dropped, the new forward is applied.
        await proc.on_revoked({TP(IN, 1), TP(REP, 1)})
        proc.on_assigned(assignment)
        skipped = proc.wm.events_skipped._value.get()
        await proc.on_batch(TP(REP, 1), _bundled(1, [(0, 100), (0, 101), (0, 102)], limit=1))
        part = proc.parts[1]
        assert part.engine.lines[-1] == b'{"account_id": "acct_102"}'
        assert part.forwards == {0: 103} and len(part.engine.lines) == 3
        assert proc.wm.events_skipped._value.get() - skipped == 2

    run_async(scenario())


def test_with_exchange_commits_off_nothing_is_held_and_checkpoints_come_sooner():
    proc = _eos_processor()
    proc.exchange_commit_s = 0.0
    proc.interval = 5.0

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc._dead_letter(b"a", "bad_json", "", TP(IN, 0))
        assert [a[0] for a in proc.app.producer.sent] == ["t-dead"] and proc.held == []
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        proc.parts[0].engine.awaiting_figures = True
        later = proc.last_checkpoint + EXCHANGE_WAIT_S + 0.1
        assert not proc.exchange_commit_due(later)
        assert proc.checkpoint_due(later), "the exchange moves at checkpoints, 1 s apart"
        proc.exchange_commit_s = 0.25
        assert proc.exchange_commit_due(later) and not proc.checkpoint_due(later)

    run_async(scenario())


class BlockingTransactions(FakeTransactions):
    """Commits wait for `release`, as a round trip to the broker does."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def commit(self, offsets: dict[TP, int]) -> None:
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        await super().commit(offsets)


def test_an_exchange_commit_runs_beside_the_engines_and_a_checkpoint_waits_for_it():
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0, 1))
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        proc.start_exchange_commit()
        await asyncio.sleep(0)  # the commit task starts and waits on the broker
        assert proc.exchanged == set() and txn.commits == []
        # The engines go on meanwhile; what they send is left for the next commit.
        await asyncio.wait_for(proc.on_batch(TP(IN, 0), record_block(2)), 1.0)
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        assert proc.exchanged == {0}
        proc.start_exchange_commit()  # one in flight: no second one
        checkpoint = asyncio.ensure_future(proc.checkpoint())
        await asyncio.sleep(0.05)
        assert not checkpoint.done(), "a checkpoint went beside an exchange commit"
        txn.release.set()
        await asyncio.wait_for(checkpoint, 1.0)
        # The exchange commit at the previous checkpoint's offsets, then the checkpoint.
        assert txn.commits == [{TP(IN, 0): 0}, {TP(IN, 0): 3}]

    run_async(scenario())


def test_a_failed_exchange_commit_stops_the_next_batch():
    proc = _eos_processor()
    proc.txn = txn = BlockingTransactions()
    txn.fail = RuntimeError("broker said no")
    txn.release.set()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        proc.start_exchange_commit()
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="broker said no"):
            await proc.on_batch(TP(IN, 0), record_block(1))
        with pytest.raises(RuntimeError, match="broker said no"):
            await proc.checkpoint()

    run_async(scenario())
