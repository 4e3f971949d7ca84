"""Pins the Faust and mode internals the worker relies on (streams/kafka/internals.py):
the app's hooks, Faust's aiokafka consumer and its thread, and its tables. An upgrade of
either starts here; aiokafka's own internals are pinned in test_internals_aiokafka.py,
the versions in test_internals_versions.py, and test_public_names.py checks that the rest
of streams/kafka/ uses none of them."""

from __future__ import annotations

import asyncio
import inspect
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import mode
import pytest
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.structs import ConsumerRecord
from faust.stores import rocksdb as faust_rocksdb
from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka import internals
from streams.kafka.internals import (
    AppHooks,
    ConsumerHooks,
    ConsumerThreadHooks,
    in_partition,
)
from tests.pins_util import params, run_apart


# -- faust.App ---------------------------------------------------------------------------
class _App(AppHooks):
    calls: list

    def new_transport(self) -> Any:
        return "transport"

    async def before_revoke(self, revoked: set[TP]) -> None:
        self.calls.append(("hook-revoke", revoked))

    def before_assign(self, assigned: set[TP]) -> None:
        self.calls.append(("hook-assign", assigned))


def test_app_private_hooks_have_the_signatures_overridden():
    assert params(faust.App._new_transport) == ["self"]
    assert params(faust.App._on_partitions_revoked) == ["self", "revoked"]
    assert params(faust.App._on_partitions_assigned) == ["self", "assigned", "generation_id"]
    # The public-named hooks must not shadow anything Faust has.
    for name in ("new_transport", "before_revoke", "before_assign"):
        assert not hasattr(faust.App, name), name


def test_faust_builds_its_transport_through_new_transport():
    assert _App("pin-transport", broker="kafka://localhost:1").transport == "transport"


def test_the_consumer_calls_the_app_rebalance_hooks_and_ours_run_first(monkeypatch):
    calls: list = []

    async def faust_revoked(self: Any, revoked: set) -> None:
        calls.append(("faust-revoke", revoked))

    async def faust_assigned(self: Any, assigned: set, generation_id: int = 0) -> None:
        calls.append(("faust-assign", assigned, generation_id))

    monkeypatch.setattr(faust.App, "_on_partitions_revoked", faust_revoked)
    monkeypatch.setattr(faust.App, "_on_partitions_assigned", faust_assigned)
    from streams.kafka.consumer import BatchTransport

    class App(_App):
        def new_transport(self) -> Any:
            return BatchTransport(self.conf.broker_consumer, self)

    app = App("pin-rebalance", broker="kafka://localhost:1")
    app.calls = calls
    consumer = app.consumer  # Faust hands it the app's private rebalance callbacks
    tps = {TP("in", 0)}
    run_apart(consumer._on_partitions_revoked(tps))
    run_apart(consumer._on_partitions_assigned(tps, 7))
    assert calls == [
        ("hook-revoke", tps),
        ("faust-revoke", tps),
        ("hook-assign", tps),
        ("faust-assign", tps, 7),
    ]


# -- Faust's aiokafka consumer --------------------------------------------------------
CONSUMER_HOOKS = [
    "drain", "offset_to_commit", "extra_commit_partitions", "has_acks", "stopping",
    "next_records", "is_buffered", "mark_read", "deliver_each",
    "seek_partitions_to_beginning", "fetch_max_wait_ms",
]  # fmt: skip


def test_consumer_private_methods_have_the_signatures_used():
    c = faust_aiokafka.Consumer
    assert params(c._new_consumer_thread) == ["self"]
    assert params(c._filter_tps_with_pending_acks) == ["self", "topics"]
    assert inspect.signature(c._filter_tps_with_pending_acks).parameters["topics"].default is None
    assert params(c._new_offset) == ["self", "tp"]
    assert params(c._drain_messages) == ["self", "fetcher"]
    assert params(c._wait_next_records) == ["self", "timeout"]
    assert params(c._to_message) == ["self", "tp", "record"]
    assert params(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer) == [
        "self",
        "transport",
    ]
    assert params(faust_aiokafka.AIOKafkaConsumerThread.seek_to_beginning) == [
        "self",
        "partitions",
    ]
    for name in CONSUMER_HOOKS:
        assert not hasattr(faust_aiokafka.Consumer, name), name


def test_recovery_asks_highwaters_through_the_threads_private_method():
    """ConsumerThreadHooks._highwaters replaces Faust's answer for exactly_once; Faust's
    public `highwaters` must still route through it, and its own version must still read
    the fetch cache under transactions (the behaviour worked around)."""
    t = faust_aiokafka.AIOKafkaConsumerThread
    assert params(t._highwaters) == ["self", "partitions"]
    assert "self._highwaters" in inspect.getsource(t.highwaters)
    assert "last_stable_offset" in inspect.getsource(t._highwaters)
    assert "end_offsets" in inspect.getsource(internals.ConsumerThreadHooks._highwaters)


def test_faust_calls_the_private_consumer_hooks_it_is_expected_to():
    # Commits: the partitions to commit, then the offset of each.
    commit = inspect.getsource(faust_consumer.Consumer)
    assert "self._filter_tps_with_pending_acks(topics)" in commit
    assert "self._new_offset(tp)" in commit
    # The Fetcher service runs the consumer's drain loop.
    assert "consumer._drain_messages(self)" in inspect.getsource(faust_consumer.Fetcher)
    # aiokafka hands the private wait to its Fetcher when the consumer starts.
    start = inspect.getsource(aiokafka_consumer.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


class _Consumer(ConsumerHooks):
    ready: dict

    def extra_commit_partitions(self, topics: Any) -> Any:
        return [tp for tp in self.ready if not self.has_acks(tp)]

    def offset_to_commit(self, tp: TP) -> int | None:
        return self.ready[tp] if tp in self.ready else super().offset_to_commit(tp)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _ConsumerApp(AppHooks):
    def new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def _consumer() -> tuple[Any, _Consumer]:
    app = _ConsumerApp("pin-consumer", broker="kafka://localhost:1")
    consumer = app.consumer
    consumer.ready = {}
    return app, consumer


def test_commit_hooks_add_partitions_and_offsets_to_fausts_own():
    _, c = _consumer()
    acked, ready = TP("a", 0), TP("in", 0)
    c._acked[acked].extend([1, 2, 3, 5])  # Faust commits up to the first gap
    c.ready[ready] = 7
    assert list(c._filter_tps_with_pending_acks()) == [acked, ready]
    assert c._new_offset(acked) == 4
    assert c._new_offset(ready) == 7
    assert c.has_acks(acked) and not c.has_acks(ready)


def test_consumer_thread_passes_fetch_max_wait_ms_to_aiokafka():
    app, c = _consumer()
    assert isinstance(c._thread, ConsumerThreadHooks)

    async def built(wait: int | None) -> int:
        c.fetch_max_wait_ms = wait
        client = c._thread._create_worker_consumer(app.transport)
        try:
            return client._fetch_max_wait_ms
        finally:
            await client.stop()

    assert run_apart(built(123)) == 123
    assert run_apart(built(None)) == 1500  # Faust's own value, kept when none is set


def _coordinator(answers: list[int]) -> Any:
    """aiokafka's GroupCoordinator, a member of generation 3, whose heartbeats the broker
    answers with `answers`' error codes in turn (its real `_do_heartbeat` runs)."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.group import HeartbeatResponse_v1

    coord = object.__new__(GroupCoordinator)
    coord.group_id, coord.generation, coord.member_id = "pin-group", 3, "member-1"
    coord.coordinator_id = 1
    coord._rejoin_needed_fut = asyncio.get_running_loop().create_future()

    async def send_req(request: Any) -> Any:
        return HeartbeatResponse_v1(throttle_time_ms=0, error_code=answers.pop(0))

    coord._send_req = send_req
    return coord


def test_the_group_lease_is_renewed_by_answered_heartbeats_and_ends_with_the_membership():
    import time

    from aiokafka.consumer.group_coordinator import GroupCoordinator

    # aiokafka's heartbeat task calls the instance's `_do_heartbeat`, which the lease wraps.
    assert "await self._do_heartbeat()" in inspect.getsource(GroupCoordinator._heartbeat_routine)
    assert params(GroupCoordinator._do_heartbeat) == ["self"]

    async def scenario() -> None:
        answers = [0, 27, 0, 25]  # ok, rebalance in progress, ok, unknown member
        coord = _coordinator(answers)
        # Until a heartbeat is answered the session is taken to start at `since`.
        lease = internals.GroupLease(coord, 6.0, time.monotonic() - 4)
        assert 1.5 < lease.left() < 2.1 and not lease.holds()
        assert await coord._do_heartbeat() is True
        assert 5.5 < lease.left() <= 6.0 and lease.holds()
        # During a rebalance the member stays in the group: the heartbeat counts.
        before = lease.renewed
        assert await coord._do_heartbeat() is True and lease.renewed >= before
        # The broker has dropped the member: aiokafka forgets its id, and the lease ends.
        assert await coord._do_heartbeat() is True
        assert await coord._do_heartbeat() is False
        assert coord.member_id == "" and lease.out() and lease.left() == 0
        assert not lease.holds()

        # No heartbeat answered for half the session timeout: no longer held.
        coord = _coordinator([0])
        lease = internals.GroupLease(coord, 0.4, float("-inf"))
        assert await coord._do_heartbeat() is True and lease.holds()
        time.sleep(0.25)
        assert coord.member_id == "member-1" and 0 < lease.left() < 0.2 and not lease.holds()

    run_apart(scenario())


def test_the_consumer_thread_watches_the_coordinator_its_consumer_starts():
    # Faust's thread builds and starts its aiokafka consumer in on_start; aiokafka's start
    # creates the group coordinator, which ConsumerThreadHooks.on_start then watches.
    thread_start = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.on_start)
    assert "self._consumer = self._create_consumer(" in thread_start
    assert "await self._consumer.start()" in thread_start
    consumer_start = inspect.getsource(aiokafka_consumer.AIOKafkaConsumer.start)
    assert "self._coordinator = GroupCoordinator(" in consumer_start
    _, c = _consumer()
    assert c.group_lease() is None  # before the thread starts: nothing is owned yet
    c._thread.lease = lease = SimpleNamespace(holds=lambda: False)
    assert c.group_lease() is lease


def test_stopping_reads_modes_stop_events():
    _, c = _consumer()
    fetcher_service = mode.Service()
    assert not c.stopping(fetcher_service)
    fetcher_service._stopped.set()
    assert c.stopping(fetcher_service)
    fetcher_service._stopped.clear()
    c._stopped.set()
    assert c.stopping(fetcher_service)


def test_read_offsets_and_buffered_partitions_are_fausts():
    _, c = _consumer()
    tp = TP("a", 1)
    assert c._read_offset[tp] is None  # a defaultdict of None, as Faust's monitor expects
    c.mark_read(tp, 41)
    assert c._read_offset[tp] == 41
    assert isinstance(c._buffered_partitions, set) and not c.is_buffered(tp)
    c._buffered_partitions.add(tp)
    assert c.is_buffered(tp)


@pytest.mark.timeout(30)
def test_deliver_each_gives_faust_messages_and_marks_them_read():
    got: list = []
    tp = TP("a", 0)
    records = [ConsumerRecord("a", 0, o, 0, 0, b"k", b"v%d" % o, None, 1, 2, []) for o in (5, 6)]

    async def callback(message: Any) -> None:
        got.append(message)

    async def deliver() -> Any:
        _, c = _consumer()  # on the running loop, as in a worker
        c.callback = callback
        await c.deliver_each(tp, records)
        return c

    c = run_apart(deliver())
    assert [(m.tp, m.offset, m.key, m.value) for m in got] == [
        (tp, 5, b"k", b"v5"),
        (tp, 6, b"k", b"v6"),
    ]
    assert c._read_offset[tp] == 6


def test_next_records_and_seek_reach_fausts_private_methods(monkeypatch):
    _, c = _consumer()
    sought: list = []

    async def seek(*tps: TP) -> None:
        sought.extend(tps)

    async def wait(timeout: float) -> tuple:
        return {TP("a", 0): [timeout]}, None

    monkeypatch.setattr(c._thread, "seek_to_beginning", seek)
    monkeypatch.setattr(c, "_wait_next_records", wait)
    run_apart(c.seek_partitions_to_beginning(TP("a", 0), TP("a", 1)))
    assert sought == [TP("a", 0), TP("a", 1)]
    assert run_apart(c.next_records(0.5)) == ({TP("a", 0): [0.5]}, None)
    # (records by partition, partitions active when the fetch was asked for, or None)
    want = typing.Tuple[  # noqa: UP006 - compared with Faust's own annotation
        typing.Optional[typing.Mapping[TP, typing.List[typing.Any]]],  # noqa: UP006, UP045
        typing.Optional[typing.Set[TP]],  # noqa: UP006, UP045
    ]
    assert inspect.signature(faust_consumer.Consumer._wait_next_records).return_annotation == want


# -- Faust tables ------------------------------------------------------------------------
def test_tables_and_stores_read_the_current_event_that_in_partition_sets():
    assert faust_tables.current_event is faust.streams.current_event
    assert faust_rocksdb.current_event is faust.streams.current_event
    assert faust.streams.current_event() is None
    with in_partition("in", 3):
        event = faust.streams.current_event()
        assert (event.message.topic, event.message.partition) == ("in", 3)
    assert faust.streams.current_event() is None


def test_a_store_write_in_partition_goes_to_that_partitions_rocksdb(tmp_path: Path):
    app = faust.App("pin-store", datadir=str(tmp_path), store="rocksdb://")
    table = app.Table("state", default=None, partitions=2, key_type=bytes, value_type=bytes)
    store = table.data
    try:
        with in_partition("in", 1):
            store[b"k"] = b"v"
            assert store[b"k"] == b"v"
        store.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), 1), 42)
        dirs = internals.local_state_dirs(table, 2)
        assert dirs[1].is_dir() and not dirs[0].exists()
        db = store._dbs[1]
        assert db.get(b"k") == b"v"
        assert db.get(internals.local_offset_key(table)) == b"42"  # str(offset).encode()
    finally:
        for db in list(store._dbs.values()):
            db.close()
