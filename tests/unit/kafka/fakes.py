"""Fakes of Faust's app, consumer, producer, table and transactions, and a Processor built
on them: the Kafka runtime's bookkeeping exercised without a broker. The real parts are
pinned in tests/unit/kafka/test_internals*.py and tests/integration/kafka/."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.engine.metrics import Metrics
from streams.kafka.block import Block
from streams.kafka.metrics import WorkerMetrics
from streams.kafka.processor import Processor, Topics


def run_async(coro: Any) -> Any:
    """asyncio.run in a thread of its own: earlier tests in the same session (the browser
    tests' sync API) can leave an event loop running in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


IN, REP, LOG = "t-usage", "t-usage-by-account", "t-engine-state-changelog"


def every_partition(partitions: int = 4, topics: tuple[str, ...] = (IN, REP, LOG)) -> set[TP]:
    """What a worker that owns every partition of `topics` is assigned."""
    return {TP(t, p) for t in topics for p in range(partitions)}


def block_of(values: list, headers: list | None = None, first: int = 0) -> Block:
    n = len(values)
    return Block(list(range(first, first + n)), [None] * n, values, headers or [()] * n)


def record_block(*offsets: int) -> Block:
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


def make_processor(
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


class FakeTransactions:
    """Transactions that record the offsets of each commit: the processor's exactly_once
    paths without a broker."""

    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []

    def id_for(self, partition: int) -> str:
        return f"txn-{partition}"

    async def commit(self, offsets: dict[TP, int]) -> None:
        self.commits.append(dict(offsets))
