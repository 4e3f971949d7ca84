"""Parts of the Kafka runtime that run without a broker: partitioning, account extraction,
health, checkpoints, and the consumer's and processor's rebalance bookkeeping."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import pickle
import random
import subprocess
import sys
import zlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.contract import _decode
from streams.engine.metrics import Metrics
from streams.kafka import checkpoint
from streams.kafka.checkpoint import UnusableCheckpoint
from streams.kafka.checkpoint_commits import EOS_MAX_PAUSE_S, checkpoint_pause
from streams.kafka.consumer import BatchConsumer
from streams.kafka.exchange_commits import EXCHANGE_COMMIT_S, EXCHANGE_WAIT_S
from streams.kafka.fetch import Block
from streams.kafka.health import HealthInputs, evaluate
from streams.kafka.metrics import WorkerMetrics
from streams.kafka.positions import GAP_RETRIES
from streams.kafka.processor import Processor, Topics
from streams.kafka.routing import Router, account_of, partition_for
from streams.kafka.watermarks import SourceClocks
from tests.events_util import T0


@pytest.mark.parametrize("key", [b"acct_000001", b"a", b"", "ünïcode".encode(), b"x" * 97])
def test_partition_matches_kafka_python_default_partitioner(key):
    # kafka-python's murmur2 is a separate implementation of the Java client's hash.
    for n in (1, 4, 8, 12):
        assert partition_for(key, n) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % n


def test_account_of_fast_and_slow_paths():
    assert account_of(b'{"ts": 1, "account_id":"acct_7", "x": 2}') == b"acct_7"
    assert account_of(b'{"account_id" : "acct_8"}') == b"acct_8"  # spacing: slow path
    assert account_of(b'{"account_id":"a\\"b"}') == b'a"b'  # escape: slow path
    assert account_of(b'{"account_id": 42}') is None
    assert account_of(b'{"account_id": ""}') is None
    assert account_of(b"not json") is None
    assert account_of(b"[1, 2]") is None
    assert account_of(b"") is None
    assert account_of(None) is None


def _run(coro: Any) -> Any:
    """asyncio.run in a thread of its own: earlier tests in the same session (the browser
    tests' sync API) can leave an event loop running in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_router_keeps_unreadable_records_local():
    router = Router(8)
    mine = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) == 3]
    other = [a for a in (f"acct_{i}" for i in range(200)) if partition_for(a.encode(), 8) != 3]
    values = [
        b'{"account_id":"%s"}' % mine[0].encode(),
        b'{"account_id":"%s"}' % other[0].encode(),
        b"{broken",
    ]
    recs = _block(values, headers=[(), (("h", b"1"),), ()])
    local, foreign = router.split(recs, 3)
    assert local.values == [values[0], values[2]] and local.offsets == [0, 2]
    owner = partition_for(other[0].encode(), 8)
    assert (foreign.owners, foreign.values, foreign.offsets) == ([owner], [values[1]], [1])
    assert router.owner(other[0].encode()) == partition_for(other[0].encode(), 8)


def test_router_split_takes_the_placement_a_block_carries():
    """Where the consumer thread already placed the records (fetch.py), split walks none
    of them again; a placement that does not fit the Block is worked out afresh."""
    values = [b'{"account_id":"acct_%d"}' % i for i in range(64)]
    recs = _block(values)
    want = Router(8).split(recs, 3)
    recs.where = _decode.partitions(values, 8)
    assert Router(8).split(recs, 3) == want
    recs.where = np.full(64, 3, np.int32).tobytes()  # says every record is partition 3's
    local, foreign = Router(8).split(recs, 3)
    assert local is recs and len(foreign) == 0
    recs.where = b"\x00" * 8  # two records' worth: not this Block's
    assert Router(8).split(recs, 3) == want


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32"])
def test_router_split_matches_reading_every_record(partitioner: str):
    """The compiled placement must agree with account_of + partition_for, record by record,
    under either `[kafka] input_partitioner`."""
    rng = random.Random(7)
    values = [None, b"", b"{broken", b'{"account_id": 42}', b'{"account_id":"a\\"b"}']
    for i in range(3000):
        acct = "".join(rng.choice("ab_09\u00e9") for _ in range(rng.randint(1, 30)))
        sep = rng.choice([":", " : ", ":"])
        values.append(f'{{"ts":{i},"account_id"{sep}"{acct}","x":"y"}}'.encode())
    recs = _block(values)
    for part in (0, 5):
        local, foreign = Router(8, partitioner=partitioner).split(recs, part)
        want_local, want_foreign = [], []
        for offset, v in enumerate(values):
            a = account_of(v)
            if a is None or (owner := partition_for(a, 8, partitioner)) == part:
                want_local.append(v)
            else:
                want_foreign.append((owner, v, offset))
        got = list(zip(foreign.owners, foreign.values, foreign.offsets, strict=True))
        # Grouped by owner, each owner's in the order read (a stable sort).
        assert local.values == want_local and got == sorted(want_foreign, key=lambda r: r[0])
        assert foreign and local


def test_a_block_placed_by_crc32_stays_whole_with_a_crc32_router():
    """Records a librdkafka client keyed by account (CRC-32) stay on the partition they were
    produced to when the worker is told so, and are forwarded under murmur2."""
    accounts = [f"acct_{i}".encode() for i in range(400)]
    values = [b'{"account_id":"%s"}' % a for a in accounts if zlib.crc32(a) % 8 == 6]
    recs = _block(values)
    local, foreign = Router(8, partitioner="crc32").split(recs, 6)
    assert local is recs and len(foreign) == 0
    local, foreign = Router(8).split(recs, 6)
    assert len(foreign) > len(values) // 2
    assert Router(8, partitioner="crc32").owner(b"acct_1") == zlib.crc32(b"acct_1") % 8


@pytest.mark.parametrize(
    ("partitioner", "keyed", "said"),
    [("murmur2", True, "crc32"), ("crc32", True, "murmur2"), ("murmur2", False, None)],
)
def test_a_producer_placing_by_the_other_partitioner_is_named_once(
    caplog, partitioner: str, keyed: bool, said: str | None
):
    """Records keyed by account and placed by the partitioner the worker was not told of
    are all forwarded; the worker says which setting would keep them, once. Unkeyed
    records (placed at random) fit neither, and nothing is said."""
    other = "crc32" if partitioner == "murmur2" else "murmur2"
    router = Router(8, partitioner=partitioner)
    accounts = [f"acct_{i}".encode() for i in range(2_000)]
    by_part: dict[int, list[bytes]] = {}
    for i, a in enumerate(accounts):
        by_part.setdefault(partition_for(a, 8, other) if keyed else i % 8, []).append(a)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.routing"):
        for _ in range(2):  # a Block gives 256 records to the sample
            for part, accts in by_part.items():
                values = [b'{"account_id":"%s"}' % a for a in accts]
                block = Block(
                    list(range(len(values))),
                    list(accts) if keyed else [None] * len(accts),
                    values,
                    [()] * len(values),
                )
                router.split(block, part)
    said_lines = [r.getMessage() for r in caplog.records if "input_partitioner" in r.getMessage()]
    if said is None:
        assert said_lines == [] and router.hint.done
    else:
        assert len(said_lines) == 1 and f'input_partitioner = "{said}"' in said_lines[0]


def _h(**kw) -> HealthInputs:
    base = dict(
        now=1000.0,
        in_recovery=False,
        recovery_since=None,
        last_progress=999.0,
        lag=0,
        owned_partitions=4,
        started=True,
    )
    return HealthInputs(**{**base, **kw})


def test_health_states():
    assert evaluate(_h(), 120, 60)[0] == 200
    body = evaluate(_h(consumed=10, processed=7), 120, 60)[1]
    assert (body["events_consumed"], body["events_processed"]) == (10, 7)
    assert evaluate(_h(started=False), 120, 60)[0] == 503
    code, body = evaluate(_h(in_recovery=True, recovery_since=950.0), 120, 60)
    assert (code, body["status"]) == (200, "recovering")
    code, body = evaluate(_h(in_recovery=True, recovery_since=800.0), 120, 60)
    assert (code, body["status"]) == (503, "recovery_stuck")
    assert "200s" in body["reason"]
    # Idle with nothing to read is healthy; idle with a backlog is a stall.
    assert evaluate(_h(last_progress=500.0, lag=0), 120, 60)[0] == 200
    code, body = evaluate(_h(last_progress=500.0, lag=12), 120, 60)
    assert (code, body["status"]) == (503, "stalled")


def test_state_blob_round_trip():
    rng = np.random.default_rng(0)
    state = {
        "arr": np.arange(10_000.0),  # compresses
        "ids": rng.integers(0, 2**63, 10_000, dtype=np.uint64),  # does not
        "sets": ({"a"}, {"b"}),
        "x": -np.inf,
    }
    blob = checkpoint.encode_state(state)
    back = checkpoint.decode_state(blob)
    assert np.array_equal(back["arr"], state["arr"]) and np.array_equal(back["ids"], state["ids"])
    assert back["sets"] == state["sets"] and back["x"] == -np.inf
    back["arr"][0] = 5.0  # engines update restored arrays in place
    assert len(blob) < 80_000 + 20_000  # the ids stay raw, the range is deflated
    # Checkpoints written before buffers went out of band still load.
    legacy = zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)
    assert np.array_equal(checkpoint.decode_state(legacy)["ids"], state["ids"])
    m = checkpoint.Manifest(3, 2, {"t": 10, "t-by-account": 4}, 999)
    assert checkpoint.Manifest.from_bytes(m.to_bytes()) == m
    assert checkpoint.chunk_key(5, 3, 1) != checkpoint.chunk_key(5, 4, 1)


# -- rebalance bookkeeping -----------------------------------------------------------------

IN, REP, LOG = "t-usage", "t-usage-by-account", "t-engine-state-changelog"


def test_seek_to_committed_also_positions_input_partitions_without_a_commit(monkeypatch):
    # What aiokafka's seek_to_committed reports: it seeks only offsets above 0, so after a
    # rebalance in which the drain loop discarded fetched records, partitions 0 and 1 and
    # the repartition partition would stay past those records.
    committed = {TP(IN, 0): None, TP(IN, 1): 0, TP(IN, 2): 57, TP(REP, 0): None, TP(LOG, 0): None}

    async def client_seek_to_committed(self: Any) -> dict:
        return committed

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", client_seek_to_committed)
    sought: list[TP] = []

    class Thread:
        async def seek_to_beginning(self, *tps: TP) -> None:
            sought.extend(tps)

    consumer = object.__new__(BatchConsumer)
    consumer.batch_topics = frozenset({IN, REP})
    consumer._thread = Thread()
    assert _run(consumer.seek_to_committed()) == committed
    # Changelog partitions are left to Faust's recovery, which seeks them itself.
    assert sorted(sought) == [TP(IN, 0), TP(IN, 1), TP(REP, 0)]


def _block(values: list, headers: list | None = None, first: int = 0) -> Block:
    n = len(values)
    return Block(list(range(first, first + n)), [None] * n, values, headers or [()] * n)


def _records(*offsets: int) -> Block:
    return Block.of([Block([o], [None], [b'{"account_id": "acct_1"}'], [()]) for o in offsets])


class FakeEngine:
    """Keeps every line; none is ever closed, so all go through the journal."""

    closed_until = float("-inf")
    journal_floor = float("-inf")
    newest_read = float("-inf")
    awaiting_figures = False  # windows held for campaign figures (TwoPhase)
    unscored_windows = 0  # closed windows not yet scored (TwoPhase)
    unscored_bytes = 0
    median_read = float("-inf")
    seen_from = 0  # no event ids: the dedup generations never turn

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.fresh: list[bytes] = []

    cfg = SimpleNamespace(engine=SimpleNamespace(max_line_bytes=4096))

    def process_lines(self, lines: list[bytes], columns: tuple | None = None) -> Any:
        self.columns = columns
        self.lines += lines
        self.fresh += lines
        return SimpleNamespace(alerts=[], dead_letters=[], snapshots=[], shadow_alerts=[])

    def take_journal(self) -> tuple[list[bytes], float]:
        fresh, self.fresh = self.fresh, []
        return fresh, 0.0

    def state_dict(self, pending: bool = True) -> dict:
        return {"lines": list(self.lines) if pending else []}

    def load_state_dict(self, state: dict) -> None:
        self.lines = list(state["lines"])

    def restore_pending(self, lines: list[bytes]) -> None:
        self.lines += lines

    def take_seen(self) -> list:
        return []

    def restore_seen(self, segments: list) -> None:
        assert segments == []


class FakeConsumer:
    def __init__(self, assignment: set[TP]) -> None:
        self.tps = assignment
        self.ready_offsets: dict[TP, int] = {}
        self.paused: set[TP] = set()
        self.sought: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return self.tps

    # Faust's public flow control, as the backpressure uses it.
    def pause_partitions(self, tps) -> None:
        self.paused |= set(tps)

    def resume_partitions(self, tps) -> None:
        self.paused -= set(tps)

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))

    def highwater(self, tp: TP) -> int | None:
        return None

    def log_end(self, tp: TP) -> int | None:
        return None

    async def commit(self) -> bool:
        return True

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.ready_offsets.pop(tp, None)


class FakeTable(dict):
    """The state table (state_table.StateTable): a dict whose changelog sends are
    acknowledged at once, or fail when `failing` is set."""

    failing: Exception | None = None

    def take_sent(self) -> list:
        fut = asyncio.get_running_loop().create_future()
        if self.failing is not None:
            fut.set_exception(self.failing)
        else:
            fut.set_result(None)
        return [fut]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, *args: Any, transactional_id: str | None = None) -> asyncio.Future:
        # Under exactly_once the transaction an output joins comes last.
        self.sent.append(args if transactional_id is None else (*args, transactional_id))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush(self) -> None:
        return None

    # What outputs.send_batches uses of the aiokafka producer behind Faust's (the real one
    # is pinned in tests/integration/kafka/test_kafka_forward_batches.py): each record of a
    # batch is kept as a `send` of it would be, (topic, key, value, partition).
    def _ensure_producer(self) -> FakeProducer:
        return self

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(4))

    def create_batch(self) -> list:
        return FakeBatch()

    async def send_batch(self, batch: list, topic: str, partition: int) -> asyncio.Future:
        self.sent += [(topic, key, value, partition) for key, value in batch]
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class FakeBatch(list):
    def append(self, key: bytes, value: bytes, timestamp: None, headers: list) -> bool:
        super().append((key, value))
        return True


def _processor(
    assignment: set[TP], snapshot_interval_s: float = 0.0, **kw: Any
) -> tuple[Processor, Callable[[], float | None]]:
    metrics = Metrics()
    wm = WorkerMetrics(metrics.registry)
    app = SimpleNamespace(
        consumer=FakeConsumer(assignment),
        producer=FakeProducer(),
        consumer_generation_id=1,
        rebalancing=False,
        in_recovery=False,
    )
    topics = Topics(IN, REP, "t-alerts", "t-dead", "t-snapshots")
    table = kw.pop("table", None)
    repartition = kw.pop("repartition", False)
    proc = Processor(
        app,
        FakeTable() if table is None else table,
        topics,
        4,
        FakeEngine,
        metrics,
        wm,
        60.0,
        1000,
        repartition,
        snapshot_interval_s,
        **kw,
    )
    return proc, lambda: metrics.registry.get_sample_value("vigil_owned_partitions")


def test_a_checkpoint_placed_by_another_partitioner_stops_the_worker_in_one_line():
    """`[kafka] input_partitioner` decides which partition owns an account; a checkpoint
    written under the other one holds accounts that now belong elsewhere."""
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    part = zlib.crc32(b"acct_1") % 4  # where a librdkafka client keyed by account put it
    table = FakeTable()

    async def scenario() -> None:
        proc, _ = _processor(assignment, repartition=True, partitioner="crc32", table=table)
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, part), _records(0, 1))
        assert proc.parts[part].engine.lines and not proc.app.producer.sent  # none forwarded
        await proc.checkpoint(final=True)

        again, _ = _processor(assignment, repartition=True, partitioner="crc32", table=table)
        again.on_assigned(assignment)
        await again.on_batch(TP(IN, part), _records(2))
        assert len(again.parts[part].engine.lines) == 3  # resumed, two from the journal

        told_otherwise, _ = _processor(assignment, repartition=True, table=table)
        told_otherwise.on_assigned(assignment)
        with pytest.raises(UnusableCheckpoint) as err:
            await told_otherwise.on_batch(TP(IN, part), _records(2))
        msg = str(err.value)
        assert "\n" not in msg and "placed by the crc32 partitioner" in msg
        assert "kafka.input_partitioner is murmur2; set it back to crc32" in msg
        assert "--discard-unreadable-state" in msg

        emptied, _ = _processor(assignment, repartition=True, table=table, discard_unreadable=True)
        emptied.on_assigned(assignment)
        await emptied.on_batch(TP(IN, part), _records(2))
        assert emptied.wm.state_discarded._value.get() == 1
        # Opened empty (the batch, read from past the committed offset, waits for a refetch).
        assert emptied.parts[part].engine.lines == []

    _run(scenario())


def test_processor_owns_its_assignment_and_refuses_batches_after_a_revoke():
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, owned = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        # Owned from the assignment on, before any batch: an idle partition counts too.
        assert owned() == 4 and not proc.parts
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        assert proc.parts[1].engine.lines and proc.parts[1].next_offsets == {IN: 2}

        # Revoked: checkpointed, dropped and no longer owned, although the client still
        # lists the partition as assigned until the group's next assignment.
        await proc.on_revoked({TP(t, 1) for t in (IN, REP, LOG)})
        assert owned() == 3 and 1 not in proc.parts
        restored = checkpoint.read(proc.table, IN, 1)
        assert restored is not None and restored[1].offsets == {IN: 2}
        # A batch that waited for the lock during the revoke must not reopen the engine.
        await proc.on_batch(TP(IN, 1), _records(2))
        assert 1 not in proc.parts

        # Assigned again: the engine resumes from the checkpoint on its next batch.
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(1, 2))
        assert proc.parts[1].next_offsets == {IN: 3}
        assert len(proc.parts[1].engine.lines) == 3  # offset 1 skipped as already applied

    _run(scenario())


def test_a_worker_out_of_its_group_writes_no_state_and_still_drops_what_it_lost():
    # Regression (fault soak, at_least_once): a worker frozen past its session timeout
    # checkpointed its partitions on the revoke that followed, after the other worker had
    # taken them over; its writes deleted segments the new owner's manifest still named,
    # and a restart from the changelog stopped on "the changelog is incomplete".
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, owned = _processor(assignment)
    member = {"in": True}
    proc.group_lease = lambda: SimpleNamespace(
        holds=lambda: member["in"], out=lambda: not member["in"], session_timeout_s=6.0
    )
    withheld = lambda: proc.metrics.registry.get_sample_value("vigil_checkpoints_withheld_total")  # noqa: E731

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        await proc.checkpoint()
        first = checkpoint.read_manifest(proc.table, IN, 1)
        assert first is not None and first.offsets == {IN: 2}
        await proc.on_batch(TP(IN, 1), _records(2, 3))

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
        await proc.on_batch(TP(IN, 2), _records(0))
        await proc.checkpoint()
        written = checkpoint.read_manifest(proc.table, IN, 2)
        assert written is not None and written.offsets == {IN: 1} and not proc.withholding

    _run(scenario())


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
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}

    async def scenario(holds: list[bool], out: bool, timeout_s: float = 6.0):
        proc, _ = _processor(assignment)
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        _leased(proc, holds, out, timeout_s)
        try:
            await proc.checkpoint()
        except RuntimeError as exc:
            return proc, exc
        return proc, None

    # Out of the group by the time the state is encoded: nothing written or committed.
    proc, exc = _run(scenario([True, False], out=True))
    assert exc is None and checkpoint.read_manifest(proc.table, IN, 1) is None
    assert proc.app.consumer.ready_offsets == {} and proc.withholding
    # In doubt, then a heartbeat is answered: written.
    proc, exc = _run(scenario([True, False, False, True], out=False))
    assert exc is None and checkpoint.read_manifest(proc.table, IN, 1) is not None
    # In doubt for the whole session timeout: the worker stops rather than lose the
    # journal it took, and nothing is written.
    proc, exc = _run(scenario([True, False], out=False, timeout_s=0.2))
    assert exc is not None and "session timeout" in str(exc)
    assert checkpoint.read_manifest(proc.table, IN, 1) is None


def test_a_changelog_record_not_acknowledged_fails_the_checkpoint_before_its_commit():
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)
    proc.table.failing = RuntimeError("NotEnoughReplicas")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        with pytest.raises(RuntimeError, match="changelog records were not delivered"):
            await proc.checkpoint()
        assert proc.app.consumer.ready_offsets == {} and proc.changelog_behind

    _run(scenario())


def test_nothing_is_written_after_the_final_checkpoint():
    # The stop is marked clean right after the final checkpoint (app.py): a checkpoint
    # still waiting for the lock then must not write what the marker would not cover.
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        await proc.checkpoint(final=True)
        assert proc.closed
        written = checkpoint.read_manifest(proc.table, IN, 1)
        await proc.on_batch(TP(IN, 1), _records(2))
        await proc.checkpoint()
        assert checkpoint.read_manifest(proc.table, IN, 1) == written
        assert not proc.withholding  # closed, not in doubt: nothing said

    _run(scenario())


def test_a_checkpoint_cut_short_marks_the_changelog_behind_for_the_rest_of_the_run():
    # The worker marks a clean stop (stale_state.mark_clean_stop) only when every table
    # write of its checkpoints was flushed to the changelog.
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)
    flushes = {"n": 0, "fail_at": 0}

    async def flush() -> None:
        flushes["n"] += 1
        if flushes["n"] == flushes["fail_at"]:
            raise RuntimeError("broker gone")

    proc.app.producer.flush = flush

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        await proc.checkpoint()
        assert not proc.changelog_behind and flushes["n"] == 2  # sinks, then the changelog
        await proc.on_batch(TP(IN, 1), _records(2))
        flushes["fail_at"] = flushes["n"] + 2  # the flush after the table writes fails
        with pytest.raises(RuntimeError):
            await proc.checkpoint()
        assert proc.changelog_behind
        # A later checkpoint gets through, but what the failed flush dropped stays lost:
        # only a rebuild from the changelog at the next start makes the two agree.
        await proc.checkpoint()
        assert proc.changelog_behind and not proc.parts[1].dirty

    _run(scenario())


def test_the_engine_gets_the_columns_decoded_in_the_consumer_thread_while_rows_are_whole():
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)

    def block(first: int, limit: int = 4096) -> Block:
        b = _records(first, first + 1)
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

    _run(scenario())


def test_a_batch_fetched_before_a_rebalance_is_dropped_even_if_the_partition_returns():
    # Regression: under exactly_once, a batch that waited for the lock through a rebalance
    # was applied to the engine restored from an older checkpoint when the partition came
    # back to the same worker; the records between that checkpoint and the stale batch,
    # fetched again after the seek, were then skipped as already applied.
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        async with proc.lock:  # a checkpoint or rebalance holds the lock meanwhile
            stale = asyncio.ensure_future(proc.on_batch(TP(IN, 1), _records(5, 6)))
            await asyncio.sleep(0)
            proc.app.consumer_generation_id += 1  # the group rebalanced
            proc.on_assigned(assignment)
        await stale
        assert proc.parts[1].next_offsets == {IN: 2}  # not 7: offsets 2..4 still to come
        await proc.on_batch(TP(IN, 1), _records(2, 3, 4, 5, 6))
        assert proc.parts[1].next_offsets == {IN: 7}
        assert len(proc.parts[1].engine.lines) == 7

    _run(scenario())


def _fetched(first: int, until: int, *offsets: int) -> Block:
    """A Block as the fetch path hands it over: read from `first`, the position at `until`."""
    block = _records(*offsets) if offsets else Block.empty()
    block.fetched_from, block.until = first, until
    return block


def test_a_batch_read_from_past_the_engine_is_dropped_and_read_again():
    # Regression: Faust resumes a partition's fetching just before it seeks the partition
    # to its committed offset after a rebalance. A fetch in between read from where the
    # previous assignment left the position (2584 where the checkpoint said 2364); applied,
    # it moved the engine past 2364..2583, which the seek then read again and skipped as
    # applied: 220 events lost under exactly_once.
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)
    refetched = lambda: proc.metrics.registry.get_sample_value("vigil_batches_refetched_total")  # noqa: E731

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _fetched(0, 2, 0, 1))
        await proc.on_batch(TP(IN, 1), _fetched(5, 7, 5, 6))  # 2..4 not read yet
        assert proc.parts[1].next_offsets == {IN: 2} and len(proc.parts[1].engine.lines) == 2
        assert proc.app.consumer.sought == [(TP(IN, 1), 2)] and refetched() == 1
        await proc.on_batch(TP(IN, 1), _fetched(2, 7, 2, 3, 4, 5, 6))
        assert proc.parts[1].next_offsets == {IN: 7} and len(proc.parts[1].engine.lines) == 7

    _run(scenario())


def test_a_fetch_of_markers_only_moves_the_engine_on_without_a_refetch():
    # Under read_committed a fetch may hold only transaction markers; the next one starts
    # after them, and must not look like a gap.
    assignment = {TP(t, p) for t in (IN, REP, LOG) for p in range(4)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(REP, 2), _fetched(0, 3, 0, 1, 2))
        await proc.on_batch(TP(REP, 2), _fetched(3, 4))  # a commit marker at 3
        await proc.on_batch(TP(REP, 2), _fetched(4, 6, 4, 5))
        assert proc.parts[2].next_offsets == {REP: 6} and len(proc.parts[2].engine.lines) == 5
        assert proc.app.consumer.sought == []

    _run(scenario())


def test_a_gap_that_keeps_coming_back_is_taken_as_records_gone_from_the_broker():
    # Records removed by retention while the worker was down: the broker answers a read
    # from the engine's offset with the log's new start. After GAP_RETRIES reads the
    # worker goes on from there rather than asking forever.
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), _fetched(0, 1, 0))
        for _ in range(GAP_RETRIES + 1):
            await proc.on_batch(TP(IN, 0), _fetched(50, 52, 50, 51))
        assert len(proc.app.consumer.sought) == GAP_RETRIES
        assert proc.parts[0].next_offsets == {IN: 52} and len(proc.parts[0].engine.lines) == 3

    _run(scenario())


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


def test_snapshots_wait_for_their_interval_except_on_revoke_and_stop(monkeypatch):
    # Built from the picks as they stand when sent: one record per account, latest pick.
    monkeypatch.setattr(
        "streams.kafka.outputs.latest",
        lambda picks: [(a, {"account_id": a, "row": i}) for a, (_, i) in picks.items()],
    )
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment, snapshot_interval_s=3600.0)
    sent = proc.app.producer.sent

    def snapshots_sent() -> list[tuple[bytes, int]]:
        return [(a[1], orjson.loads(a[2])["row"]) for a in sent if a[0] == "t-snapshots"]

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.snapshots.picks = {"acct_1": (None, 1), "acct_2": (None, 2)}
        await proc.checkpoint()  # within the interval: kept for later
        assert snapshots_sent() == [] and len(proc.snapshots) == 2
        proc.snapshots.picks["acct_1"] = (None, 7)  # a newer window replaces the older pick
        await proc.checkpoint({1})  # partitions leaving: everything pending goes out
        assert sorted(snapshots_sent()) == [(b"acct_1", 7), (b"acct_2", 2)]
        proc.snapshots.picks = {"acct_3": (None, 3)}
        proc.last_snapshots -= 3600.0  # the interval has passed
        await proc.checkpoint()
        assert (b"acct_3", 3) in snapshots_sent() and not proc.snapshots
        proc.snapshots.picks = {"acct_4": (None, 4)}
        await proc.checkpoint(final=True)  # stopping: nothing stays behind
        assert (b"acct_4", 4) in snapshots_sent()

    _run(scenario())


def test_snapshots_are_built_beside_the_engines_and_sent_with_their_checkpoint(monkeypatch):
    # Building them (a dict and its JSON per account) stopped the engines for up to 1.7 s.
    locked_while_built = []

    def build(picks):
        locked_while_built.append(proc.lock.locked())
        return [(a, {"account_id": a, "row": i}) for a, (_, i) in picks.items()]

    monkeypatch.setattr("streams.kafka.outputs.latest", build)
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment, snapshot_interval_s=0.0)
    sent = proc.app.producer.sent

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.snapshots.picks = {"acct_1": (None, 1), "acct_2": (None, 2)}
        await proc.checkpoint()
        assert locked_while_built == [False]
        assert sorted(a[1] for a in sent if a[0] == "t-snapshots") == [b"acct_1", b"acct_2"]
        assert not proc.snapshots

    _run(scenario())


def _slow_checkpoints() -> tuple[Processor, set[TP]]:
    """A processor on four partitions whose checkpoints take 0.05 s a flush, against an
    interval of 0.1 s: slow enough to defer the next one."""
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment)
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
        await proc.on_batch(TP(IN, 1), _records(0, 1))
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

    _run(scenario())


def test_a_slow_checkpoint_that_moved_no_input_offset_does_not_defer_the_next():
    """A restarted worker's first checkpoint writes its rebuilt state before it has read
    anything again: deferred after it, the next came too late to cover what the worker
    then read again, and a worker killed in a row read that again each time."""
    proc, assignment = _slow_checkpoints()

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.settled = True  # past the first checkpoint (the next test)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        await proc.checkpoint()
        assert proc.pause >= 0.9  # it read on: deferred
        proc.parts[1].dirty = True  # state to write, no input read since
        await proc.checkpoint()
        assert proc.pause == proc.interval
        assert proc.checkpoint_due(proc.last_checkpoint + 0.11)
        await proc.on_batch(TP(IN, 1), _records(2, 3))
        await proc.checkpoint()
        assert proc.pause >= 0.9

    _run(scenario())


class FakeTransactions:
    """Transactions that record the offsets of each commit: the processor's exactly_once
    paths without a broker."""

    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []

    def id_for(self, partition: int) -> str:
        return f"txn-{partition}"

    async def commit(self, offsets: dict[TP, int]) -> None:
        self.commits.append(dict(offsets))


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
            await proc.on_batch(TP(IN, 1), _records(proc.positions.get(TP(IN, 1), 0)))
            await proc.checkpoint()
            assert (proc.pause > proc.interval) is exactly_once
            await proc.on_batch(TP(IN, 1), _records(proc.positions[TP(IN, 1)]))
            await proc.checkpoint()
            assert proc.pause > proc.interval  # from the second on: deferred

    _run(scenario())


def test_under_exactly_once_the_exchange_is_committed_between_checkpoints_while_it_waits():
    assignment = {TP(IN, p) for p in range(2)}
    proc, _ = _processor(assignment)
    proc.interval = proc.pause = 5.0  # as after a quick checkpoint
    proc.txn = object()

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
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

    _run(scenario())


def test_the_input_pauses_while_an_owned_engine_holds_too_many_windows():
    assignment = {TP(IN, p) for p in range(2)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), _records(0, 1))
        proc.flow_control()
        assert not proc.app.consumer.paused
        proc.parts[1].engine.unscored_windows = proc.max_unscored + 1
        proc.flow_control()
        assert proc.app.consumer.paused == assignment  # every owned input, not one
        proc.parts[1].engine.unscored_windows = proc.max_unscored
        proc.flow_control()
        assert proc.app.consumer.paused == set()

    _run(scenario())


def test_the_owned_engines_unscored_bytes_are_shown():
    assignment = {TP(IN, p) for p in range(2)}
    proc, _ = _processor(assignment)

    def shown() -> float | None:
        return proc.metrics.registry.get_sample_value("vigil_unscored_bytes")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        for p in range(2):
            await proc.on_batch(TP(IN, p), _records(0, 1))
            proc.parts[p].engine.unscored_bytes = 600 * (p + 1)
        proc.max_bytes = 1000
        proc.flow_control()
        assert shown() == 1800
        # Past the bound, but no source's lead is known yet: none is known to be ahead of
        # the slowest, so none pauses (to_pause's tests cover the leads).
        assert proc.app.consumer.paused == set()

    _run(scenario())


def test_a_failing_snapshot_build_is_counted_and_detection_goes_on(monkeypatch):
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment)

    def failures() -> float | None:
        return proc.metrics.registry.get_sample_value("vigil_snapshot_failures_total")

    class Broken:
        def rows(self, which):
            raise ValueError("no such field")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), _records(0, 1))
        proc.snapshots.picks = {"acct_1": (Broken(), 0)}
        await proc.checkpoint()
        assert failures() == 1 and len(proc.snapshots) == 0
        assert proc.app.consumer.ready_offsets[TP(IN, 0)] == 2  # the checkpoint went on
        # Holding a window that cannot be read is counted too, and the batch still counts.
        monkeypatch.setattr(
            FakeEngine, "process_lines",
            lambda self, lines: SimpleNamespace(alerts=[], dead_letters=[], snapshots=[None], shadow_alerts=[]),
        )  # fmt: skip
        await proc.on_batch(TP(IN, 0), _records(2))
        assert failures() == 2 and proc.consumed == 3

    _run(scenario())


def test_tombstones_are_dead_lettered_and_blank_values_reach_the_decoder():
    assignment = {TP(IN, p) for p in range(4)}
    proc, _ = _processor(assignment)
    good = b'{"account_id": "acct_1"}'

    def rejected() -> float | None:
        return proc.metrics.registry.get_sample_value(
            "vigil_events_rejected_total", {"reason": "malformed_json"}
        )

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), _block([good, None, b"", b" \n", None, good]))
        # Blank values are bytes: the engine's decoder rejects them with a reason.
        assert proc.parts[0].engine.lines == [good, b"", b" \n", good]
        dead = [s for s in proc.app.producer.sent if s[0] == "t-dead"]
        assert [(s[2], dict(s[5])["vigil-reason"]) for s in dead] == [
            (b"", b"malformed_json"),
            (b"", b"malformed_json"),
        ]
        assert rejected() == 2 and proc.consumed == 6
        await proc.on_batch(TP(IN, 0), _block([None], first=6))  # only a tombstone
        assert rejected() == 3 and len(proc.parts[0].engine.lines) == 4

    _run(scenario())
