"""Every private name of Faust, mode and aiokafka that the worker relies on, in one place.

The rest of `streams/kafka/` uses public API only (tests/unit/kafka/test_public_names.py
parses it to make sure). Each adapter below names the behaviour it relies on;
tests/unit/kafka/test_internals*.py pin each one against the installed libraries, so an
upgrade starts there: bump the pins in constraints.txt and SUPPORTED in
internals_versions.py, run those test files, and fix here whatever they report.
`check_versions` (internals_versions.py, which imports none of them, so it can speak
first) stops `vigil worker` at start-up when the installed libraries are not the ones
these adapters were tested with.

Private hooks are overridden only by the base classes here, which call public-named hooks
that the worker's own classes (app.py, consumer.py, fetch.py) override in turn.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka import conn
from aiokafka import errors as kafka_errors
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.consumer import fetcher
from aiokafka.protocol.group import JoinGroupRequest
from aiokafka.record.memory_records import MemoryRecords
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


# -- faust.App -------------------------------------------------------------------------
class AppHooks(faust.App):
    """faust.App whose private transport and rebalance hooks call public-named methods."""

    def new_transport(self) -> Any:
        """The transport (and so the consumer) the app runs on; Faust's by default."""
        return super()._new_transport()

    async def before_revoke(self, revoked: set[TP]) -> None:
        """Runs on a rebalance while the revoked table partitions can still be written."""

    def before_assign(self, assigned: set[TP]) -> None:
        """Runs with every new assignment, before Faust's own handling of it."""

    # Faust builds `app.transport`, hence `app.consumer`, once, through this method.
    def _new_transport(self) -> Any:
        return self.new_transport()

    # Faust calls this on every rebalance before it stops the revoked partitions' tables,
    # so table writes made here still reach their changelog.
    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.before_revoke(revoked)
        await super()._on_partitions_revoked(revoked)

    # Faust calls this with the whole new assignment, even for partitions with no records.
    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.before_assign(assigned)
        await super()._on_partitions_assigned(assigned, generation_id)


# -- Faust's aiokafka consumer --------------------------------------------------------
class ConsumerThreadHooks(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; the aiokafka consumer it builds waits at most the owning
    consumer's `fetch_max_wait_ms` (Faust hard-codes 1500 ms)."""

    # Faust builds the worker's AIOKafkaConsumer here; aiokafka reads its private
    # `_fetch_max_wait_ms` only in `start()`, when it creates the Fetcher.
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.consumer, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait
        return consumer

    # Faust creates and starts the aiokafka consumer here, and with it the group coordinator
    # (aiokafka's private `_coordinator`), whose heartbeats the lease watches.
    async def on_start(self) -> None:
        started = time.monotonic()  # before any membership of this consumer began
        await super().on_start()
        coordinator = self._ensure_consumer()._coordinator
        self.lease = GroupLease(coordinator, self.app.conf.broker_session_timeout, started)

    # Faust's recovery asks this for each changelog's end before reading it. Under
    # exactly_once it answers with the last stable offset cached from the last fetch
    # response: None for a partition not fetched yet, which recovery takes as offset -1
    # and stops the worker with ConsistencyError (seen in the fault soak on three
    # brokers). Asked of the broker instead: with the consumer's read_committed isolation,
    # ListOffsets answers the last stable offset itself, and the end offset otherwise,
    # which is what Faust asks for then.
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return await self._ensure_consumer().end_offsets(partitions)


class ConsumerHooks(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose private commit and fetch-loop hooks call
    public-named methods, with the private state they need behind small methods."""

    # For ConsumerThreadHooks: WorkerSettings' value, set by build_worker; None keeps Faust's.
    fetch_max_wait_ms: int | None = None

    # Public-named hooks, Faust's behaviour by default.
    async def drain(self, fetcher: Any) -> None:
        """The fetch loop: reads records and hands them on until stopped."""
        await super()._drain_messages(fetcher)

    def offset_to_commit(self, tp: TP) -> int | None:
        """The offset to commit for `tp` now; Faust's is the end of its acked run."""
        return super()._new_offset(tp)

    def extra_commit_partitions(self, topics: Any) -> Iterable[TP]:
        """Partitions to commit besides those with acked messages."""
        return ()

    # Faust builds its consumer thread, once, through this method.
    def _new_consumer_thread(self) -> Any:
        return ConsumerThreadHooks(self, loop=self.loop, beacon=self.beacon)

    # Faust's commit asks this for the partitions to commit (those with acked messages),
    # then `_new_offset` for each; a None offset commits nothing.
    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        yield from self.extra_commit_partitions(topics)

    def _new_offset(self, tp: TP) -> int | None:
        return self.offset_to_commit(tp)

    # Faust's Fetcher service runs this as the consumer's only fetch loop.
    async def _drain_messages(self, fetcher: Any) -> None:
        await self.drain(fetcher)

    # `_acked`: partition -> offsets acked since the last commit, what Faust commits from.
    def has_acks(self, tp: TP) -> bool:
        return tp in self._acked

    # mode's Service keeps its stop flag in the private `_stopped` event; the Fetcher is one.
    def stopping(self, fetcher: Any) -> bool:
        return self._stopped.is_set() or fetcher._stopped.is_set()

    # What Faust's getmany loop waits on: (records by partition, partitions active when the
    # fetch was asked for, or None when all were).
    async def next_records(self, timeout: float) -> tuple[Mapping | None, set | None]:
        return await self._wait_next_records(timeout)

    # Partitions Faust keeps reading while paused for recovery (standby and active tables).
    def is_buffered(self, tp: TP) -> bool:
        return tp in self._buffered_partitions

    # `_read_offset`: what Faust's monitor and recovery take as read so far.
    def mark_read(self, tp: TP, offset: int) -> None:
        self._read_offset[tp] = offset

    # Faust's per-record path: a ConsumerMessage to the conductor's callback, abandoned
    # when flow is suspended by a rebalance, exactly as Faust's own drain loop does.
    async def deliver_each(self, tp: TP, records: Iterable[Any]) -> None:
        callback, suspended = self.callback, self.suspend_flow.wait
        for record in records:
            await self.wait_first(callback(self._to_message(tp, record)), suspended())
            self._read_offset[tp] = record.offset

    # Faust's `highwater` answers aiokafka's last stable offset under exactly_once; the end
    # of the log, open transactions included, is aiokafka's `highwater` on the thread's
    # consumer (a read of fetch state, as Faust's own `highwater` does from this thread).
    def log_end(self, tp: TP) -> int | None:
        return self._thread._ensure_consumer().highwater(tp)

    # The group's committed offsets of any partitions, assigned to this worker or not, in
    # one OffsetFetch: aiokafka's public `committed` asks one partition a request; its
    # coordinator's `fetch_committed_offsets` takes them all. Asked on the consumer thread,
    # whose loop the aiokafka consumer runs on.
    async def committed_offsets(self, tps: list[TP]) -> dict[TP, int | None]:
        coordinator = self._thread._ensure_consumer()._coordinator
        found = await self._thread.call_thread(coordinator.fetch_committed_offsets, tps)
        return {
            TP(tp.topic, tp.partition): (m.offset if m.offset >= 0 else None)
            for tp, m in found.items()
        }

    # `_thread`: Faust's consumer thread (ConsumerThreadHooks), whose lease starts with it.
    def group_lease(self) -> GroupLease | None:
        """The consumer thread's GroupLease; None before the consumer starts, when this
        worker holds no partition."""
        return getattr(self._thread, "lease", None)

    # Faust's thread-delegating consumer has no public seek_to_beginning; its thread does.
    async def seek_partitions_to_beginning(self, *tps: TP) -> None:
        await self._thread.seek_to_beginning(*tps)


# -- aiokafka's group coordinator -----------------------------------------------------------
class GroupLease:
    """How long the broker keeps this worker in its consumer group at least.

    The broker drops a member that sends no heartbeat for the session timeout and hands its
    partitions to the others at once; the member learns of it only from its next heartbeat's
    answer. A worker stopped past the timeout (SIGSTOP, a paused VM, a starved consumer
    thread) resumes still holding engines of partitions another worker now owns. Under
    at_least_once nothing fences its table writes: its checkpoints interleave with the new
    owner's in the changelog and delete segments the new owner's manifest still names, and
    whoever next restores that partition from the changelog finds it incomplete (seen in
    the fault soak). The lease tells the processor not to write then.

    aiokafka's coordinator sends heartbeats from its private `_do_heartbeat` (True when the
    broker answered that the member is still in the group); it sets the public `member_id`
    back to UNKNOWN_MEMBER_ID when the broker answers that it is not.
    """

    def __init__(self, coordinator: Any, session_timeout_s: float, since: float) -> None:
        self.session_timeout_s = session_timeout_s
        # Send time of the last heartbeat the broker answered (it received it later, so it
        # keeps the member until at least this plus the session timeout); until the first,
        # `since`, a time before the consumer joined: a session starts at the join.
        self.renewed = since
        self._coordinator = coordinator
        beat = coordinator._do_heartbeat

        async def heartbeat() -> bool:
            sent = time.monotonic()
            ok = await beat()
            if ok:
                self.renewed = max(self.renewed, sent)
            return bool(ok)

        coordinator._do_heartbeat = heartbeat

    def out(self) -> bool:
        """Whether the broker answered that this member is no longer in the group."""
        return self._coordinator.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID

    def left(self) -> float:
        """Seconds the member is sure to stay in the group; 0 once it is out."""
        if self.out():
            return 0.0
        return max(0.0, self.renewed + self.session_timeout_s - time.monotonic())

    def holds(self) -> bool:
        """Whether at least half the session timeout is left. Heartbeats every fifth of it
        (app.py) keep four fifths left; half leaves time for a checkpoint's writes to land,
        and a failing heartbeat three tenths of the timeout to be retried first."""
        return self.left() >= self.session_timeout_s / 2


# -- Faust tables ------------------------------------------------------------------------
@dataclass
class _Msg:
    topic: str
    partition: int


@dataclass
class _PartitionEvent:
    message: _Msg


# Faust routes a table write (store and changelog) to the partition of the current event,
# which `faust.streams.current_event()` reads from the `_current_event` context variable as a
# weak reference. Batches arrive without per-record events, so a stand-in names the partition.
@contextmanager
def in_partition(topic: str, partition: int) -> Iterator[None]:
    """Lets a Faust table write to `partition` from outside an agent's stream."""
    event = _PartitionEvent(_Msg(topic, partition))
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


# Faust's RocksDB store keeps each table partition in its own directory (`partition_path`),
# holding the last applied changelog offset as `str(offset).encode()` under `offset_key`.
def local_state_dirs(table: Any, partitions: int) -> dict[int, Path]:
    """Where each partition of `table` keeps its local RocksDB state."""
    store = table.data
    return {p: store.partition_path(p) for p in range(partitions)}


def local_offset_key(table: Any) -> bytes:
    return table.data.offset_key


# -- aiokafka's fetcher ------------------------------------------------------------------
READ_COMMITTED = fetcher.READ_COMMITTED  # aiokafka's isolation level value, an int


class RawMemoryRecords(MemoryRecords):
    """aiokafka's MemoryRecords that keeps the fetched bytes for the C walk."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.raw = raw


class PartitionRecordsHooks(fetcher.PartitionRecords):
    """aiokafka's PartitionRecords (the records of one partition fetch) with public names
    for the private state a subclass reads, and `unpack` as the hook to override."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepare()

    def prepare(self) -> None:
        """Called once the fetch's records are in place, in the thread that fetched them
        (aiokafka builds this object as the fetch response arrives, long before it is
        iterated), with `next_fetch_offset` at the fetch position; nothing by default."""

    def unpack(self) -> Iterator[Any]:
        """What iterating this object yields; aiokafka's records by default."""
        return self.aiokafka_unpack()

    # aiokafka's own reader: skips control and aborted batches, deserializes each record.
    def aiokafka_unpack(self) -> Iterator[Any]:
        return super()._unpack_records()

    # `__init__` makes the iterator from this generator method; nothing is read before.
    def _unpack_records(self) -> Iterator[Any]:
        return self.unpack()

    @property
    def tp(self) -> Any:
        return self._tp

    @property
    def fetched_bytes(self) -> bytes | None:
        """The fetch response's record bytes, when RawMemoryRecords was installed."""
        return getattr(self._records, "raw", None)

    @property
    def check_crcs(self) -> bool:
        return self._check_crcs

    def has_aborted_transactions(self) -> bool:
        """Whether aiokafka must skip aborted batches in this fetch (read_committed)."""
        return self._isolation_level == READ_COMMITTED and bool(self._aborted_transactions)


# The fetcher module builds every MemoryRecords and PartitionRecords through these two
# module globals (in `Fetcher._proc_fetch_request`), so replacing them changes all fetches.
def install_partition_records(cls: type[PartitionRecordsHooks]) -> None:
    fetcher.PartitionRecords = cls  # type: ignore[misc]
    fetcher.MemoryRecords = RawMemoryRecords  # type: ignore[misc]


class FetcherHooks(fetcher.Fetcher):
    """aiokafka's Fetcher, refreshing its metadata when a position reset meets a broker
    that no longer leads the partition."""

    # aiokafka resets a position (`_update_fetch_positions`: a new assignment without a
    # committed offset, a seek to either end, an offset out of range) by asking the leader
    # in its cached metadata, and when that broker answers NotLeaderForPartition it logs,
    # sleeps retry_backoff_ms and asks the same broker again: nothing refreshes the
    # metadata before metadata_max_age_ms (5 min). A restarted broker takes its leaderships
    # back, so a worker reset against the old leader for minutes (seen in the fault soak on
    # three brokers: "Failed fetch offsets from 1", every 100 ms, until its health check
    # gave up). aiokafka's other caller, `_retrieve_offsets`, refreshes already; the client
    # merges a second request into the pending one.
    async def _proc_offset_request(self, node_id: int, topic_data: Any) -> Any:
        try:
            return await super()._proc_offset_request(node_id, topic_data)
        except kafka_errors.KafkaError as err:
            if err.invalid_metadata:
                self._client.force_metadata_update()
            raise


# AIOKafkaConsumer builds its Fetcher in `start()` through this module global.
def install_fetcher() -> None:
    aiokafka_consumer.Fetcher = FetcherHooks  # type: ignore[misc]


# aiokafka reads every connection through an asyncio.StreamReader whose limit is this
# module global, read when a connection opens.
def raise_reader_limit(limit: int) -> None:
    conn.READER_LIMIT = max(conn.READER_LIMIT, limit)


def enable_transactions(app: Any) -> None:
    """Call before anything touches `app.consumer`, under exactly_once. Faust turns
    transactions on only inside its worker (`in_worker`, set when its Worker is created)
    and caches that answer (`in_transaction`, a cached property) the first time it is
    read, which the consumer does when it is created: the worker builds the consumer
    earlier, to install its batch path, and would otherwise cache False."""
    app.in_worker = True
    if not (app.in_transaction and app.consumer.in_transaction):
        raise RuntimeError("Faust did not enable transactions for processing_guarantee")


# -- Faust's producers -------------------------------------------------------------------
@asynccontextmanager
async def aiokafka_producer(producer: Any, transactional_id: str | None) -> AsyncIterator[Any]:
    """The aiokafka producer behind Faust's `producer`, for sending whole record batches
    (its public `create_batch` and `send_batch`): the plain one, or the transactional
    one of `transactional_id`, held under the lock Faust's own `send` takes for it so
    that no commit of that transaction runs in between. Faust's `send` takes one
    record at a time and makes a future for each."""
    if transactional_id is None:
        yield producer._ensure_producer()
        return
    async with producer._trn_locks[transactional_id]:
        yield producer._transaction_producers[transactional_id]
