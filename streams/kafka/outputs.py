"""The worker's outputs: what the Processor sends, to which topic and in which transaction.

Every record a batch produces (alerts, shadow alerts, dead letters, records forwarded to
the repartition topic, audit records, console snapshots) is enqueued here and its delivery
awaited only at the next checkpoint (`_check_delivered`), which must succeed before input
offsets are committed. Under exactly_once each output names the input partition it comes
from, and joins that partition's transaction (transactions.py).

Under exactly_once a partition's transaction is also committed between checkpoints, with
the input offsets of its last checkpoint, so that the campaign exchange does not wait for
a checkpoint at every step (ExchangeCommits.exchange_commit). Such a commit must publish only
records that a restart from that checkpoint may send again harmlessly: the exchange's
(campaign requests, figures and progress, which owners and engines take twice without
effect, streams/runtime/campaign_desk.py), event-time marks (a maximum) and forwarded
events (their engine drops copies, forwards.py). So until the checkpoint, alerts, dead
letters, audit records and snapshots are held here (`_release_held`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from faust.types import TP

from streams.engine.snapshots import LatestSnapshots, latest
from streams.kafka.block import Block
from streams.kafka.bundles import BUNDLE_HEADER, pack
from streams.kafka.internals import aiokafka_producer
from streams.kafka.routing import Forwards, Router, partition_for
from streams.kafka.transactions import Transactions, fallback_partition

log = logging.getLogger(__name__)

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
CORRUPT_REASON = "corrupt_batch"


@dataclass
class TakenSnapshots:
    """Console snapshots a checkpoint took (`Outputs._take_snapshots`), to build and send."""

    picks: dict  # account -> (window, row), LatestSnapshots.detach
    source: int | None  # exactly_once: the partition whose transaction they join


class Outputs:
    """The Processor's output half; the Processor sets these in its __init__."""

    app: Any
    topics: Any  # processor.Topics
    metrics: Any
    wm: Any
    sinks: list
    dl_max: int
    router: Router | None
    txn: Transactions | None
    parts: dict
    assigned: set[int]
    pending: list
    touched: set[int]
    # exactly_once: outputs held for the checkpoint, as (source, record), and the
    # partitions that sent exchange records since their last commit.
    held: list
    exchanged: set[int]
    exchange_commit_s: float  # 0: no exchange commits, so nothing is held
    snapshots: LatestSnapshots

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers=None,
        partition=None,
        source: int | None = None,
    ):
        """Enqueue only; delivery is awaited at checkpoint time, not per record. `source`
        is the input partition the output comes from: its transaction under exactly_once."""
        if self.txn is None:
            fut = await self.app.producer.send(topic, key, value, partition, None, headers)
            self.pending.append(fut)
            return
        if source is None or source not in self.parts:
            source = fallback_partition(p for p in self.parts if p in self.assigned)
        record = (topic, key, value, headers, partition)
        if self.exchange_commit_s > 0 and not self._exchange_record(topic):
            self.held.append((source, record))
        else:
            await self._send_in(source, record)
            if source is not None:
                self.exchanged.add(source)
        if source is not None:
            self.touched.add(source)

    def _exchange_record(self, topic: str) -> bool:
        """Campaign records, marks and forwarded events, which exchange commits publish;
        every other output is held until the checkpoint."""
        return topic in (self.topics.campaign, self.topics.repartition)

    async def _send_in(self, source: int | None, record: tuple) -> None:
        topic, key, value, headers, partition = record
        tid = self.txn.id_for(source) if source is not None else None  # type: ignore[union-attr]
        fut = await self.app.producer.send(
            topic, key, value, partition, None, headers, transactional_id=tid
        )
        self.pending.append(fut)

    async def _release_held(self, partitions: set[int] | None) -> None:
        """Sends the held outputs of `partitions` (None: all) into their transactions, in
        the order they were made; the checkpoint commits them next."""
        kept = []
        for source, record in self.held:
            if partitions is None or source in partitions:
                await self._send_in(source, record)
            else:
                kept.append((source, record))
        self.held = kept

    async def _emit(self, out: Any, tp: TP) -> None:
        p = tp.partition
        for alert in out.alerts:
            await self._send(
                self.topics.alerts, alert.account_id.encode(), alert.to_json(), source=p
            )
        for alert in out.shadow_alerts:  # only with a shadow model, never on the alert topic
            await self._send(
                self.topics.shadow_alerts, alert.account_id.encode(), alert.to_json(), source=p
            )
        for sink in self.sinks:
            sink.write(out)
        for dl in out.dead_letters:
            await self._dead_letter(dl.raw, dl.reason, dl.detail, tp)
        for w in out.snapshots:
            # The topic is compacted: only the latest snapshot per account survives, so
            # only the latest is built and sent, at the next checkpoint.
            try:
                self.snapshots.add(w)
            except Exception:
                self._snapshot_failure("holding")
        await self._after_emit(out, tp)

    async def _after_emit(self, out: Any, tp: TP) -> None:
        """What a subclass sends after an output (campaign.py: the campaign requests)."""

    async def _dead_letter(
        self, raw: bytes, reason: str, detail: str, tp: TP, extra: list | None = None
    ) -> None:
        truncated = len(raw) > self.dl_max
        headers = [
            ("vigil-reason", reason.encode()),
            ("vigil-detail", detail[:2000].encode("utf-8", "replace")),
            ("vigil-source-topic", tp.topic.encode()),
            ("vigil-source-partition", str(tp.partition).encode()),
            ("vigil-original-bytes", str(len(raw)).encode()),
        ]
        if truncated:
            headers.append(("vigil-truncated", b"1"))
        headers += extra or []
        await self._send(
            self.topics.dead_letters, None, raw[: self.dl_max], headers, source=tp.partition
        )

    async def _corrupt(self, bad: Any, tp: TP) -> None:
        """A record batch that could not be read: its bytes go to the dead-letter topic
        with the reason and where it was, and the stream goes on after it."""
        log.error(
            "%s: unreadable record batch at offset %d, resuming at %d: %s",
            tp, bad.offset, bad.next_offset, bad.reason,
        )  # fmt: skip
        self.metrics.events_rejected.labels(CORRUPT_REASON).inc()
        detail = (
            f"{bad.reason}; partition {tp.partition}, offset {bad.offset}, "
            f"skipped to {bad.next_offset}"
        )
        await self._dead_letter(
            bad.raw, CORRUPT_REASON, detail, tp, [("vigil-source-offset", b"%d" % bad.offset)]
        )

    async def _forward(self, foreign: Forwards, source: int) -> None:
        """Sends the records of another partition's accounts to it, through the repartition
        topic, as a few bundles per partition (bundles.py) sent in record batches: a
        producer's `send` per event, and the future it makes, cost more than the engine's
        work on the event, and a record per event in a batch still cost most of the
        forwarding (docs/kafka.md, "Forwarding in batches" and "in bundles"). Under
        exactly_once they join `source`'s transaction, which exchange commits publish
        (forwards.py makes copies harmless)."""
        if not foreign:
            return
        owners = foreign.owners  # grouped by owner (Router.split): one run each
        cuts = [0, *(np.flatnonzero(np.diff(owners)) + 1).tolist(), len(owners)]
        values, offsets = foreign.values, foreign.offsets
        by_owner: dict[int, list[tuple]] = {}
        for a, b in zip(cuts, cuts[1:], strict=False):
            bundles = pack(source, offsets[a:b], values[a:b])
            by_owner.setdefault(owners[a], []).extend(
                (None, value, [(BUNDLE_HEADER, header)]) for value, header in bundles
            )
        tid = self.txn.id_for(source) if self.txn is not None else None
        async with aiokafka_producer(self.app.producer, tid) as producer:
            self.pending += await send_grouped(producer, self.topics.repartition, by_owner)
        if self.txn is not None:
            self.exchanged.add(source)
            self.touched.add(source)
        self.wm.events_repartitioned.inc(len(foreign))

    async def _audit(self, tp: TP, records: Block) -> None:
        if not self.topics.audit:
            return
        body: dict = {"topic": tp.topic, "partition": tp.partition, "offsets": records.offsets}
        if records.origins is not None:
            # Forwarded events share their bundle's offset: each is named by where its
            # source read it, [partition, offset] ([-1, -1] for one forwarded by no source).
            body["origins"] = np.column_stack(records.origins).tolist()
        await self._send(self.topics.audit, None, orjson.dumps(body), source=tp.partition)

    def _take_snapshots(self, partitions: set[int] | None) -> TakenSnapshots | None:
        """At a checkpoint of `partitions` (None: all), under the processor's lock: each
        account's latest snapshot, picked but not built. Building them (a dict and its JSON
        per account, some 85 us each) stopped the engines for up to 1.7 s at every
        snapshot interval on the benchmark's backlog; the checkpoint builds them beside
        the engines (`build_snapshots`) and sends them before its state. Under
        exactly_once they join the transaction of a partition this checkpoint commits;
        with none, they wait for a later checkpoint."""
        if not len(self.snapshots):
            return None
        source = None
        if self.txn is not None:
            source = fallback_partition(
                p
                for p in self.parts
                if p in self.assigned and (partitions is None or p in partitions)
            )
            if source is None:
                return None
            self.touched.add(source)  # so that this checkpoint commits its transaction
        return TakenSnapshots(self.snapshots.detach(), source)

    def build_snapshots(self, taken: TakenSnapshots) -> list[tuple]:
        """(key, value, headers) of each snapshot taken; in the checkpoint encoder's
        threads. A failure loses these snapshots only: the next windows bring fresh ones."""
        try:
            return [
                (account.encode() or None, orjson.dumps(snap, option=_NUMPY), [])
                for account, snap in latest(taken.picks)
            ]
        except Exception:
            self._snapshot_failure("sending")
            return []

    async def _send_snapshots(self, taken: TakenSnapshots, records: list[tuple]) -> None:
        """In record batches: one producer `send` per account cost a worker about 2 s of
        its main thread at every snapshot interval (docs/kafka.md, "Snapshots in
        batches")."""
        if not records:
            return
        tid = None
        if self.txn is not None and taken.source is not None:
            tid = self.txn.id_for(taken.source)
        async with aiokafka_producer(self.app.producer, tid) as producer:
            self.pending += await send_keyed(producer, self.topics.snapshots, records)

    def _snapshot_failure(self, when: str) -> None:
        # Snapshots only feed the console: losing some must not stop detection, and the
        # next window brings fresh ones.
        log.exception("building console snapshots failed while %s; skipped", when)
        self.wm.snapshot_failures.inc()

    async def _check_delivered(self) -> None:
        pending, self.pending = self.pending, []
        # Committing now would lose these outputs; crash and let the group replay.
        await delivered(pending, "output records")


async def delivered(futures: list, what: str) -> None:
    """Waits for every delivery future; raises, one line, if any record was not delivered,
    before the checkpoint commits offsets that would cover it."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} {what} were not delivered: {failed[0]!r}")


async def send_keyed(producer: Any, topic: str, records: list[tuple]) -> list[asyncio.Future]:
    """Sends (key, value, headers) records in batches, each to the partition its key hashes
    to as the producer's default partitioner places it (`routing.partition_for`, the Java
    client's murmur2), so that on a compacted topic an account's records share a partition
    whichever way they were sent; a record without a key goes to partition 0."""
    n = len(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple]] = {}
    for record in records:
        key = record[0]
        by_partition.setdefault(partition_for(key, n) if key else 0, []).append(record)
    return await send_grouped(producer, topic, by_partition)


async def send_grouped(
    producer: Any, topic: str, by_partition: dict[int, list[tuple]]
) -> list[asyncio.Future]:
    """`send_batches` for each partition's records; the delivery futures of all."""
    futures = []
    for partition, records in by_partition.items():
        futures += await send_batches(producer, topic, partition, records)
    return futures


async def send_batches(
    producer: Any, topic: str, partition: int, records: list[tuple]
) -> list[asyncio.Future]:
    """Sends (key, value, headers) records to one partition through an aiokafka producer's
    public batch API, in order; returns a delivery future per batch. An empty batch takes
    any record, however large (aiokafka's builder, pinned in the unit tests), so every
    record goes in one."""
    futures = []
    batch = producer.create_batch()
    for key, value, headers in records:
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            # Full, and closed by the refusal: it goes, and the record opens the next.
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)
    if records:  # the last batch holds at least the last record
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
