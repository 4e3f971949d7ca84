"""Forwarded events reach the repartition topic in whole record batches
(`outputs.send_batches`, aiokafka's public batch API), on the real broker: in order, with
their keys and headers, split over as many batches as their size needs, and under
exactly_once inside the open transaction, invisible to a read_committed reader until it
commits and gone if it aborts. Console snapshots go in batches too (`outputs.send_keyed`),
each on the partition the producer's own partitioner gives its key: the snapshot topic is
compacted."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.kafka.bundles import from_header
from streams.kafka.outputs import send_batches, send_keyed

BATCH_BYTES = 4096  # small, so that the records below need several batches


def _records(n: int, tag: str) -> list[tuple]:
    out = []
    for i in range(n):
        # Every 50th record is larger than a whole batch: it goes in a batch of its own.
        value = (b"x" * (3 * BATCH_BYTES) if i % 50 == 49 else b"v") + f"-{tag}-{i}".encode()
        headers = [("vigil-test", str(i).encode()), from_header(3, 1000 + i)]
        out.append((f"acct-{i % 7}".encode(), value, headers))
    return out


def _create(bootstrap: str, topic: str, partitions: int = 2) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


async def _read(bootstrap: str, topic: str, partition: int, expect: int) -> list:
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out: list = []
        idle = 0
        while len(out) < expect and idle < 3:
            got = await consumer.getmany(tp, timeout_ms=1000)
            idle = 0 if got else idle + 1
            out.extend(got.get(tp, []))
        return out
    finally:
        await consumer.stop()


def _as_sent(records: list) -> list[tuple]:
    return [(r.key, r.value, list(r.headers)) for r in records]


def test_records_arrive_in_order_with_keys_and_headers_in_several_batches(
    kafka_bootstrap, topic_prefix
):
    topic = f"{topic_prefix}-fwd"
    _create(kafka_bootstrap, topic)
    sent = _records(400, "plain")

    async def run() -> tuple[int, list]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=BATCH_BYTES)
        await producer.start()
        try:
            futures = await send_batches(producer, topic, 1, sent)
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return len(futures), await _read(kafka_bootstrap, topic, 1, len(sent))

    batches, got = asyncio.run(run())
    assert _as_sent(got) == [(k, v, [(h, bytes(b)) for h, b in hs]) for k, v, hs in sent]
    # 400 small records need a few batches of 4 KiB; each of the 8 large ones, its own.
    assert batches > 8 + 400 * 8 // BATCH_BYTES
    assert batches < len(sent) // 4
    assert not asyncio.run(_read(kafka_bootstrap, topic, 0, 1)), "only partition 1 was asked"


def test_in_a_transaction_they_are_seen_only_once_it_commits(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}-fwd-txn"
    _create(kafka_bootstrap, topic)
    aborted, committed = _records(120, "aborted"), _records(120, "committed")

    async def run() -> tuple[list, list]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            max_batch_size=BATCH_BYTES,
            transactional_id=f"{topic_prefix}-fwd-txn",
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            await asyncio.gather(*await send_batches(producer, topic, 0, aborted))
            await producer.abort_transaction()
            await producer.begin_transaction()
            await asyncio.gather(*await send_batches(producer, topic, 0, committed))
            before = await _read(kafka_bootstrap, topic, 0, 1)
            await producer.commit_transaction()
        finally:
            await producer.stop()
        return before, await _read(kafka_bootstrap, topic, 0, len(committed))

    before, after = asyncio.run(run())
    assert before == []
    assert [r.value for r in after] == [v for _, v, _ in committed]


def test_keyed_batches_land_where_the_producers_own_partitioner_puts_each_key(
    kafka_bootstrap, topic_prefix
):
    topic = f"{topic_prefix}-keyed"
    _create(kafka_bootstrap, topic, partitions=3)
    keys = [f"acct_{i}".encode() for i in range(60)]

    async def run() -> list:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, b"send", key=k) for k in keys])
            batched = [(k, b"batch", []) for k in keys] + [(None, b"no key", [])]
            await asyncio.gather(*await send_keyed(producer, topic, batched))
        finally:
            await producer.stop()
        return [
            (p, r) for p in range(3) for r in await _read(kafka_bootstrap, topic, p, 2 * len(keys))
        ]

    got = asyncio.run(run())
    where: dict[tuple, int] = {(r.key, r.value): p for p, r in got}
    assert len(got) == 2 * len(keys) + 1
    assert all(where[(k, b"batch")] == where[(k, b"send")] for k in keys)
    assert len({where[(k, b"send")] for k in keys}) == 3  # the keys are spread
    assert where[(None, b"no key")] == 0
