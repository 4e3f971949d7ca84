"""After a crash, a worker rebuilds its local state from the changelog instead of trusting it.

Regression (fault soak on three brokers, at_least_once, stop 40 and again in stop 41): a
worker killed with kill -9 half way through a checkpoint had written the checkpoint to its
local RocksDB store whole, and to the changelog only in part (the state and journal chunks,
not the id segment or the manifest). Restarted on the same --data-dir, it resumed from its
local manifest and built every later checkpoint on it, so the changelog's manifests named
an id segment the changelog never held; the worker that next restored that partition from
the changelog stopped on "the changelog is incomplete". Here the crash is made exact: with
the worker killed, its local store gets a checkpoint the changelog never got, as the
killed worker's did.
"""

from __future__ import annotations

import time

import orjson

from tests.plugins.kafka import T0, KafkaEnv, WorkerProc, event, wait_until


def _local_partition(env: KafkaEnv, name: str, partition: int):
    from streams.kafka.settings import WorkerSettings

    table = WorkerSettings().state_table
    return env.root / f"data-{name}" / "v1" / "tables" / f"{table}-{partition}.db"


def _write_locally_only(env: KafkaEnv, name: str, partition: int) -> str:
    """Adds an id segment to the partition's local manifest, stored in the local store only:
    what a checkpoint cut short by kill -9 leaves. Returns the segment's key."""
    from rocksdict import Options, Rdict

    db = Rdict(str(_local_partition(env, name, partition)), options=Options(raw_mode=True))
    try:
        key = f"p{partition}".encode()
        manifest = orjson.loads(db[key])
        name_ = f"{manifest['generation']}9.0"
        manifest["seen"].append([name_, 1, 0])
        chunk = f"p{partition}/i{name_}/c0"
        db[chunk.encode()] = (7).to_bytes(8, "little")
        db[key] = orjson.dumps(manifest)
    finally:
        db.close()
    return chunk


def _produce(env: KafkaEnv, start: int, n: int, tag: str) -> None:
    env.produce([event(f"acct_{i % 40}", T0 + start + i, f"{tag}-{i}") for i in range(n)])


def _consumed(w: WorkerProc, n: int) -> None:
    wait_until(lambda: w.metric_sum("vigil_events_consumed_total") >= n, f"{n} not consumed")


def _killed_after_a_checkpoint(env: KafkaEnv) -> None:
    """One partition, 300 events, a checkpoint in the local store and the changelog, then
    kill -9 of the worker."""
    env.write_config(partitions=1)
    env.create_topics()
    w = env.start_worker("w")
    _produce(env, 0, 300, "a")
    _consumed(w, 300)
    time.sleep(3)  # checkpoints every second: the manifest is in the local store and changelog
    w.kill9()


def test_a_worker_restarted_after_kill_9_rebuilds_its_state_from_the_changelog(kafka_env):
    env = kafka_env
    _killed_after_a_checkpoint(env)
    chunk = _write_locally_only(env, "w", 0)

    w = env.start_worker("w")  # the same --data-dir
    assert w.metric_sum("vigil_state_discarded_partitions_total") == 1, w.log()[-3000:]
    assert "did not stop cleanly" in w.log()
    _produce(env, 300, 100, "b")
    _consumed(w, 100)
    time.sleep(3)  # the checkpoints after the restart are in the changelog
    # Built on the changelog's manifest, not on the local one: every chunk named is there.
    assert env.unreadable_checkpoints() == {}, f"{chunk}: {w.log()[-3000:]}"

    # A clean stop keeps the local state for the next start.
    w.stop()
    assert w.proc.returncode == 0, w.log()[-3000:]
    w = env.start_worker("w")
    assert w.metric_sum("vigil_state_discarded_partitions_total") == 0
    assert "did not stop cleanly" not in w.log()
    _produce(env, 400, 50, "c")
    _consumed(w, 50)
    assert "cannot be used" not in w.log() and w.alive()


def test_chunks_a_kill_left_in_the_changelog_are_deleted_when_the_partition_opens(kafka_env):
    # Under at_least_once a worker killed between a checkpoint's chunks and the deletes
    # after its manifest leaves chunks that no manifest names, which nothing deleted.
    from kafka import KafkaProducer

    env = kafka_env
    _killed_after_a_checkpoint(env)
    stray = b"p0/g999/c0"  # a generation whose manifest never came
    producer = KafkaProducer(bootstrap_servers=env.bootstrap)
    try:
        producer.send(env.topic("changelog"), key=stray, value=b"left behind", partition=0)
        producer.flush()
    finally:
        producer.close()

    w = env.start_worker("w")
    _produce(env, 300, 10, "b")  # the partition opens from its checkpoint at its first batch
    _consumed(w, 10)
    wait_until(lambda: "deleted 1 checkpoint chunk(s)" in w.log(), "no chunk deleted")

    def tombstoned() -> bool:
        mine = [r for r in env.read("changelog", idle_s=1.0) if r.key == stray]
        return bool(mine) and mine[-1].value is None

    wait_until(tombstoned, "the stray chunk is still in the changelog", timeout_s=60)
    assert env.unreadable_checkpoints() == {} and w.alive(), w.log()[-3000:]
