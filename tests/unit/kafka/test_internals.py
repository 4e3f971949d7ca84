"""Pins every Faust, mode and aiokafka internal the worker relies on (streams/kafka/
internals.py), checks the supported versions, and that the rest of streams/kafka/ reaches
those libraries through public names only. An upgrade of any of them starts here."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import subprocess
import sys
import typing
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import mode
import pytest
from aiokafka import conn
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord
from faust.stores import rocksdb as faust_rocksdb
from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.objects import cached_property as mode_cached_property

from streams.cli import checks
from streams.kafka import internals, internals_versions
from streams.kafka.internals import (
    AppHooks,
    ConsumerHooks,
    ConsumerThreadHooks,
    PartitionRecordsHooks,
    RawMemoryRecords,
    in_partition,
)

ROOT = Path(__file__).resolve().parents[3]
KAFKA_PKG = ROOT / "streams" / "kafka"
LIBRARIES = ("faust", "aiokafka", "mode", "kafka")


def _run(coro: Any) -> Any:
    """asyncio.run on a thread of its own: in the whole suite an earlier test can leave this
    thread marked as running a loop, where asyncio.run refuses to start (seen in CI)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


# -- versions ------------------------------------------------------------------------
def test_supported_versions_are_the_ones_pinned_in_constraints():
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {d: pins[d].strip() for d in internals_versions.SUPPORTED} == (
        internals_versions.SUPPORTED
    )


def test_the_installed_libraries_are_the_supported_ones():
    internals_versions.check_versions()  # raises when this environment drifted from the pins


def test_a_mismatch_names_the_installed_and_supported_versions_in_one_line():
    installed = {**internals_versions.SUPPORTED, "aiokafka": "0.15.0"}
    with pytest.raises(internals_versions.UnsupportedVersions) as err:
        internals_versions.check_versions(installed.__getitem__)
    msg = str(err.value)
    assert "\n" not in msg
    assert "installed aiokafka 0.15.0;" in msg
    assert "faust-streaming 0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1" in msg
    assert internals_versions.ALLOW_ENV in msg


def test_a_missing_library_is_named_as_none():
    def version(dist: str) -> str:
        if dist == "mode-streaming":
            raise importlib.metadata.PackageNotFoundError(dist)
        return internals_versions.SUPPORTED[dist]

    with pytest.raises(internals_versions.UnsupportedVersions, match="mode-streaming none;"):
        internals_versions.check_versions(version)


def test_the_worker_stops_with_one_line_before_any_work_on_other_versions():
    code = (
        "import streams.kafka.internals_versions as v\n"
        "v.SUPPORTED['aiokafka'] = '0.0.1'\n"
        "import sys; sys.argv = ['vigil', 'worker']\n"
        "from streams.cli.main import main; main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: installed aiokafka 0.14.0;"), r.stderr
    assert "aiokafka 0.0.1" in lines[0]


def test_the_escape_hatch_only_warns(monkeypatch, capsys):
    monkeypatch.setitem(internals_versions.SUPPORTED, "aiokafka", "0.0.1")
    checks.kafka_libraries({internals_versions.ALLOW_ENV: "1"})
    assert "warning: installed aiokafka" in capsys.readouterr().err
    with pytest.raises(Exception) as err:  # typer.Exit, as `fail` gives it
        checks.kafka_libraries({internals_versions.ALLOW_ENV: "0"})
    assert getattr(err.value, "exit_code", None) == 2


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
    assert _params(faust.App._new_transport) == ["self"]
    assert _params(faust.App._on_partitions_revoked) == ["self", "revoked"]
    assert _params(faust.App._on_partitions_assigned) == ["self", "assigned", "generation_id"]
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
    _run(consumer._on_partitions_revoked(tps))
    _run(consumer._on_partitions_assigned(tps, 7))
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
    assert _params(c._new_consumer_thread) == ["self"]
    assert _params(c._filter_tps_with_pending_acks) == ["self", "topics"]
    assert inspect.signature(c._filter_tps_with_pending_acks).parameters["topics"].default is None
    assert _params(c._new_offset) == ["self", "tp"]
    assert _params(c._drain_messages) == ["self", "fetcher"]
    assert _params(c._wait_next_records) == ["self", "timeout"]
    assert _params(c._to_message) == ["self", "tp", "record"]
    assert _params(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer) == [
        "self",
        "transport",
    ]
    assert _params(faust_aiokafka.AIOKafkaConsumerThread.seek_to_beginning) == [
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
    assert _params(t._highwaters) == ["self", "partitions"]
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

    assert _run(built(123)) == 123
    assert _run(built(None)) == 1500  # Faust's own value, kept when none is set


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
    assert _params(GroupCoordinator._do_heartbeat) == ["self"]

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

    _run(scenario())


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

    c = _run(deliver())
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
    _run(c.seek_partitions_to_beginning(TP("a", 0), TP("a", 1)))
    assert sought == [TP("a", 0), TP("a", 1)]
    assert _run(c.next_records(0.5)) == ({TP("a", 0): [0.5]}, None)
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


# -- aiokafka's fetcher ------------------------------------------------------------------
def _fetched(n: int) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i in range(n):
        b.append(i, timestamp=None, key=None, value=b"v%d" % i, headers=[])
    return bytes(b.build())


def test_partition_records_takes_the_arguments_the_fetcher_passes():
    assert _params(fetcher.PartitionRecords.__init__) == [
        "self", "tp", "records", "aborted_transactions", "fetch_offset",
        "key_deserializer", "value_deserializer", "check_crcs", "isolation_level",
    ]  # fmt: skip
    assert fetcher.READ_COMMITTED == internals.READ_COMMITTED == 1
    # The bases are aiokafka's own classes, not anything installed over them.
    assert PartitionRecordsHooks.__bases__[0].__module__ == "aiokafka.consumer.fetcher"
    assert RawMemoryRecords.__bases__ == (MemoryRecords,)


def test_partition_records_private_state_reads_through_the_hooks():
    tp = TP("in", 0)
    raw = _fetched(3)
    pr = PartitionRecordsHooks(tp, RawMemoryRecords(raw), [], 0, None, None, True, 0)
    assert (pr.tp, pr.fetched_bytes, pr.check_crcs) == (tp, raw, True)
    assert not pr.has_aborted_transactions()
    assert [r.value for r in pr] == [b"v0", b"v1", b"v2"]  # aiokafka's own reader
    assert pr.next_fetch_offset == 3
    plain = PartitionRecordsHooks(tp, MemoryRecords(raw), [(7, 0)], 0, None, None, False, 0)
    assert plain.fetched_bytes is None and plain.check_crcs is False
    assert not plain.has_aborted_transactions()  # read_uncommitted skips nothing
    committed = PartitionRecordsHooks(tp, MemoryRecords(raw), [(7, 0)], 0, None, None, True, 1)
    assert committed.has_aborted_transactions()


def test_unpack_is_the_iterator_and_runs_only_when_iterated():
    class Probe(PartitionRecordsHooks):
        def unpack(self) -> Any:
            self.started = True
            yield "block"

    pr = Probe(TP("in", 0), RawMemoryRecords(_fetched(1)), [], 0, None, None, True, 0)
    assert not hasattr(pr, "started")  # made in __init__, nothing read before iteration
    assert list(pr) == ["block"] and pr.started


def test_prepare_runs_as_the_fetch_arrives_at_the_fetch_position():
    class Probe(PartitionRecordsHooks):
        def prepare(self) -> None:
            self.prepared_at = self.next_fetch_offset

    pr = Probe(TP("in", 0), RawMemoryRecords(_fetched(2)), [], 0, None, None, True, 0)
    assert pr.prepared_at == 0
    assert [r.value for r in pr] == [b"v0", b"v1"]


def test_fetcher_builds_records_through_the_module_globals_installed_over():
    names = inspect.getclosurevars(fetcher.Fetcher._proc_fetch_request).globals
    assert names["PartitionRecords"] is fetcher.PartitionRecords
    assert names["MemoryRecords"] is fetcher.MemoryRecords
    assert "READER_LIMIT" in inspect.getclosurevars(conn.AIOKafkaConnection.connect).globals
    original = (fetcher.PartitionRecords, fetcher.MemoryRecords, conn.READER_LIMIT)
    try:
        internals.install_partition_records(PartitionRecordsHooks)
        internals.raise_reader_limit(1 << 20)
        assert fetcher.PartitionRecords is PartitionRecordsHooks
        assert fetcher.MemoryRecords is RawMemoryRecords
        raised = max(original[2], 1 << 20)
        assert raised == conn.READER_LIMIT
        internals.raise_reader_limit(1)  # never lowered
        assert raised == conn.READER_LIMIT
    finally:
        fetcher.PartitionRecords, fetcher.MemoryRecords, conn.READER_LIMIT = original


def test_the_consumer_builds_its_fetcher_through_the_module_global_installed_over():
    names = inspect.getclosurevars(aiokafka_consumer.AIOKafkaConsumer.start).globals
    assert names["Fetcher"] is aiokafka_consumer.Fetcher
    original = aiokafka_consumer.Fetcher
    try:
        internals.install_fetcher()
        assert aiokafka_consumer.Fetcher is internals.FetcherHooks
        assert issubclass(internals.FetcherHooks, original)
    finally:
        aiokafka_consumer.Fetcher = original


def test_aiokafka_resets_a_position_through_the_hooked_request_and_never_refreshes_itself():
    # If a later aiokafka refreshes its metadata here, FetcherHooks can go.
    reset = inspect.getsource(fetcher.Fetcher._update_fetch_positions)
    assert "self._proc_offset_request(node_id, topic_data)" in reset
    assert "force_metadata_update" not in reset
    params = list(inspect.signature(fetcher.Fetcher._proc_offset_request).parameters)
    assert params == ["self", "node_id", "topic_data"]
    # The other caller refreshes already, so the hook only adds a merged request there.
    assert "force_metadata_update" in inspect.getsource(fetcher.Fetcher._retrieve_offsets)


def test_aiokafkas_reader_limit_defaults_to_64_kib():
    out = subprocess.run(
        [sys.executable, "-c", "from aiokafka import conn; print(conn.READER_LIMIT)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert int(out.stdout) == 64 * 1024


# -- the rest of streams/kafka/ uses public names only ---------------------------------
# (file, attribute): why it is not a library's private name.
ALLOWED = {
    ("held_dead_letters.py", "_dead_letter"): "Vigil's own Processor method, not a library's",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_library(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in LIBRARIES


def _derives_from_library(obj: Any) -> bool:
    return inspect.isclass(obj) and any(_from_library(k.__module__) for k in obj.__mro__[1:])


def private_uses(source: str, filename: str) -> list[str]:
    """Each use of a Kafka library's private name in `source`, as `file:line: what`."""
    tree = ast.parse(source)
    found: list[str] = []
    library_names: set[str] = set()  # names bound to a library module or object
    derived_names: set[str] = set()  # names bound to classes derived from a library's

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _from_library(alias.name):
                    library_names.add(alias.asname or alias.name.split(".")[0])
                    if any(_is_private(p) for p in alias.name.split(".")):
                        report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                if _from_library(node.module):
                    library_names.add(bound)
                    if _is_private(alias.name) or any(
                        _is_private(p) for p in node.module.split(".")
                    ):
                        report(node, f"from {node.module} import {alias.name}")
                elif node.module.startswith("streams."):
                    obj = getattr(importlib.import_module(node.module), alias.name, None)
                    if _derives_from_library(obj):
                        derived_names.add(bound)

    def root(expr: ast.AST) -> str | None:
        while isinstance(expr, ast.Attribute | ast.Call | ast.Subscript):
            expr = expr.value if not isinstance(expr, ast.Call) else expr.func
        return expr.id if isinstance(expr, ast.Name) else None

    def library_class(node: ast.ClassDef, local: set[str]) -> bool:
        return any(root(b) in library_names | derived_names | local for b in node.bases)

    local_derived: set[str] = set()
    for node in tree.body:  # classes in order, so a class may build on one above it
        if isinstance(node, ast.ClassDef) and library_class(node, local_derived):
            local_derived.add(node.name)
            for sub in ast.walk(node):
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and _is_private(
                    sub.name
                ):
                    report(sub, f"{node.name} defines {sub.name} over a library class")
                if (
                    isinstance(sub, ast.Attribute)
                    and _is_private(sub.attr)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id in ("self", "cls")
                ):
                    report(sub, f"{node.name} uses self.{sub.attr} in a library subclass")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls") or (Path(filename).name, node.attr) in ALLOWED:
                continue
            report(node, f"{ast.unparse(node)}")
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and root(t) in library_names:
                report(node, f"assigns {ast.unparse(t)}, a library's global")
    return found


def _runtime_modules() -> list[Path]:
    return sorted(p for p in KAFKA_PKG.glob("*.py") if not p.name.startswith("internals"))


def test_the_rest_of_streams_kafka_uses_public_library_names_only():
    found = []
    for path in _runtime_modules():
        found += private_uses(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_the_allow_list_is_still_needed():
    used = defaultdict(set)
    for path in _runtime_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                used[path.name].add(node.attr)
    assert [k for k in ALLOWED if k[1] not in used[k[0]]] == []


@pytest.mark.parametrize(
    "source",
    [
        "from faust.streams import _current_event\n",
        "import faust.transport._cython\n",
        "def f(c):\n    c._fetch_max_wait_ms = 5\n",
        "from aiokafka import conn\nconn.READER_LIMIT = 1\n",
        "from aiokafka.consumer import fetcher\nfetcher.PartitionRecords = object\n",
        "from faust.transport.drivers import aiokafka as fa\n"
        "class C(fa.Consumer):\n    def f(self):\n        return self._acked\n",
        "from faust.transport.drivers import aiokafka as fa\n"
        "class C(fa.Consumer):\n    def _new_offset(self, tp):\n        return 1\n",
        "from streams.kafka.internals import AppHooks\n"
        "class A(AppHooks):\n    async def _on_partitions_revoked(self, r):\n        pass\n",
        "from streams.kafka.internals import AppHooks\n"
        "class A(AppHooks):\n    pass\nclass B(A):\n    def f(self):\n        return self._conf\n",
    ],
)
def test_the_check_finds_each_kind_of_private_use(source: str):
    assert private_uses(source, "probe.py"), source


def test_the_check_leaves_own_names_alone():
    source = (
        "from streams.kafka import _records\n"
        "class Own:\n    def _f(self):\n        return self._g + _records.parse\n"
        "def _helper():\n    return 1\n"
    )
    assert private_uses(source, "probe.py") == []


def test_the_check_reads_every_runtime_module_but_the_adapters():
    names = {p.name for p in _runtime_modules()}
    assert {"app.py", "consumer.py", "fetch.py", "checkpoint.py", "stale_state.py"} <= names
    assert not {n for n in names if n.startswith("internals")}


def test_transactions_follow_in_worker_and_are_cached_when_first_read():
    """What enable_transactions relies on: `in_transaction` is a cached property of
    `in_worker` and the processing guarantee, read by the consumer when it is created."""
    assert isinstance(inspect.getattr_static(faust.App, "in_transaction"), mode_cached_property)
    early = faust.App("pin-eos-early", processing_guarantee="exactly_once")
    assert early.in_transaction is False  # not in a worker yet: and now cached
    early.in_worker = True
    assert early.in_transaction is False
    app = faust.App("pin-eos", processing_guarantee="exactly_once")
    internals.enable_transactions(app)
    assert app.in_transaction is True
    assert app.consumer.in_transaction is True


def test_log_end_is_aiokafkas_highwater_and_not_fausts_last_stable_offset():
    """Faust's `highwater` answers the last stable offset under exactly_once, which put
    marks waiting behind an open transaction out of the idle check's sight (sources went
    silent while their marks waited for a commit). `log_end` asks aiokafka's consumer for
    the end of the log itself; pinned here are both Faust's switch and that call."""
    thread_hw = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.highwater)
    assert "in_transaction" in thread_hw and "last_stable_offset" in thread_hw
    ends = {"highwater": 42, "last_stable_offset": 7}
    inner = SimpleNamespace(
        highwater=lambda tp: ends["highwater"],
        last_stable_offset=lambda tp: ends["last_stable_offset"],
    )
    c = object.__new__(internals.ConsumerHooks)
    c._thread = SimpleNamespace(_ensure_consumer=lambda: inner)
    assert c.log_end(TP("t", 0)) == 42
    consumer_cls = aiokafka_consumer.AIOKafkaConsumer
    assert callable(consumer_cls.highwater) and callable(consumer_cls.last_stable_offset)


def test_committed_offsets_are_one_coordinator_request_on_the_consumer_thread():
    """The idle check reads the group's committed offsets of every input partition, this
    worker's or not (drained.py): aiokafka's coordinator answers a list in one OffsetFetch,
    -1 meaning no commit, and the request runs on the consumer thread's loop."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    assert _params(GroupCoordinator.fetch_committed_offsets) == ["self", "partitions"]
    assert _params(mode.threads.QueueServiceThread.call_thread) == ["self", "fun", "args", "kwargs"]
    assert issubclass(faust_aiokafka.AIOKafkaConsumerThread, mode.threads.QueueServiceThread)
    assert TopicPartition("t", 1) == TP("t", 1) and hash(TopicPartition("t", 1)) == hash(TP("t", 1))
    asked: list = []

    async def fetch(partitions):
        asked.append(list(partitions))
        return {
            TopicPartition("t", 0): OffsetAndMetadata(12, ""),
            TopicPartition("t", 1): OffsetAndMetadata(-1, ""),
        }

    async def call_thread(fun, *args):
        asked.append("on the thread")
        return await fun(*args)

    inner = SimpleNamespace(_coordinator=SimpleNamespace(fetch_committed_offsets=fetch))
    c = object.__new__(internals.ConsumerHooks)
    c._thread = SimpleNamespace(_ensure_consumer=lambda: inner, call_thread=call_thread)
    got = _run(c.committed_offsets([TP("t", 0), TP("t", 1)]))
    assert got == {TP("t", 0): 12, TP("t", 1): None}
    assert all(type(tp) is TP for tp in got)
    assert asked == ["on the thread", [TP("t", 0), TP("t", 1)]]
    assert "OffsetFetchRequest" in inspect.getsource(GroupCoordinator._do_fetch_commit_offsets)


def test_fausts_producer_keeps_its_aiokafka_producers_where_the_batch_path_reads_them():
    """`aiokafka_producer` hands out the aiokafka producer behind Faust's: the plain one
    from `_ensure_producer`, a transaction's from `_transaction_producers`, under the lock
    in `_trn_locks` that Faust's own `send` takes for that transaction."""
    send = inspect.getsource(faust_aiokafka.Producer.send)
    assert "self._transaction_producers.get(transactional_id)" in send
    assert "self._trn_locks[transactional_id]" in send
    assert "self._producer" in inspect.getsource(faust_aiokafka.Producer._ensure_producer)
    app = faust.App("pin-producers", broker="kafka://127.0.0.1:1")
    producer = app.producer
    assert isinstance(producer, faust_aiokafka.Producer)
    plain, txn, lock = object(), object(), asyncio.Lock()
    producer._producer = plain  # what on_start sets: its aiokafka producer
    producer._transaction_producers["t-0"] = txn
    producer._trn_locks["t-0"] = lock

    async def use() -> tuple[Any, Any, bool]:
        async with internals.aiokafka_producer(producer, None) as p0:
            pass
        async with internals.aiokafka_producer(producer, "t-0") as p1:
            held = lock.locked()
        return p0, p1, held

    p0, p1, held = asyncio.run(use())
    assert p0 is plain and p1 is txn and held and not lock.locked()


def test_an_empty_aiokafka_batch_takes_any_record_and_a_full_one_refuses_and_closes():
    """What outputs.send_batches relies on: a record larger than the batch size still
    goes into an empty batch; a batch refuses the next record once full."""
    from aiokafka.producer.message_accumulator import BatchBuilder

    batch = BatchBuilder(1000, 0)
    assert batch.append(key=b"k", value=b"x" * 5000, timestamp=None, headers=[]) is not None
    assert batch.append(key=b"k", value=b"y", timestamp=None, headers=[]) is None
    assert batch.append(key=b"k", value=b"", timestamp=None, headers=[]) is None  # closed
