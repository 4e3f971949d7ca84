"""Pins the aiokafka internals the worker relies on (streams/kafka/internals.py): its
fetcher's records, the connection's reader limit, positions reset through the hooked
request, transactions, offsets and the producer's batches. An aiokafka upgrade starts
here and in test_internals.py."""

import asyncio
import inspect
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import faust
import mode
from aiokafka import conn
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.objects import cached_property as mode_cached_property

from streams.kafka import internals
from streams.kafka.internals import (
    PartitionRecordsHooks,
    RawMemoryRecords,
)
from tests.pins_util import params, run_apart


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
    assert params(fetcher.PartitionRecords.__init__) == [
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

    assert params(GroupCoordinator.fetch_committed_offsets) == ["self", "partitions"]
    assert params(mode.threads.QueueServiceThread.call_thread) == ["self", "fun", "args", "kwargs"]
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
    got = run_apart(c.committed_offsets([TP("t", 0), TP("t", 1)]))
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
