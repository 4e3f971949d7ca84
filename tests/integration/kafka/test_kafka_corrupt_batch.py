"""A record batch corrupted on the broker's disk, as a failing disk or a bad copy leaves it.

The broker serves a segment's bytes as they are, without checking them again, so a worker
reads whatever the file holds. Three batches produced by kcat; one byte of the middle one
flipped in the segment file. The worker must process the other two, dead-letter each offset
of the bad one with the reason, partition and offset, and keep running.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson

from tests.integration.kafka.test_kafka_kcat import _kcat
from tests.plugins.kafka import T0, KafkaEnv, event
from tests.plugins.segments import ONE_BATCH, flip_last_record_byte, records_in
from tests.plugins.segments import batches as batches_in

PER_BATCH = 50


def _segment(data_dir: Path, topic: str) -> Path:
    (log,) = data_dir.rglob(f"{topic}-0/00000000000000000000.log")
    return log


def _header(rec, name: str) -> str:
    return next((v.decode() for k, v in rec.headers if k == name), "")


def test_a_batch_corrupted_on_disk_is_dead_lettered_and_the_rest_processed(
    restartable_kafka, tmp_path, topic_prefix
):
    kcat = _kcat()
    env = KafkaEnv(restartable_kafka.bootstrap, topic_prefix, tmp_path)
    env.write_config(partitions=1)
    env.create_topics(audit=True)
    for b in range(3):  # one kcat run, one batch
        lines = [
            event(f"acct_disk_{i % 5}", T0 + b * 60 + i, f"disk-{b}-{i}", prompt_tokens=10)
            for i in range(PER_BATCH)
        ]
        subprocess.run(
            [kcat, "-b", env.bootstrap, "-t", env.topic("input"), "-P", "-p", "0", *ONE_BATCH],
            input=b"\n".join(lines) + b"\n",
            check=True,
            timeout=60,
        )
    assert restartable_kafka.data_dir is not None
    segment = _segment(restartable_kafka.data_dir, env.topic("input"))
    deadline = time.monotonic() + 30
    while len(found := batches_in(segment.read_bytes())) < 3:
        assert time.monotonic() < deadline, f"3 batches expected in {segment}"
        time.sleep(0.2)
    base = found[1][0]
    assert base == PER_BATCH
    assert records_in(segment.read_bytes(), base) == PER_BATCH, "the middle run is not one batch"
    flip_last_record_byte(segment, found[1])

    try:
        _check(env, env.start_worker("w", audit=True))
    finally:
        env.close()


def _check(env: KafkaEnv, worker) -> None:
    bad = list(range(PER_BATCH, 2 * PER_BATCH))
    deadline = time.monotonic() + 90
    while True:
        dead = env.read("dead", idle_s=1.0)
        offsets = sorted(int(_header(r, "vigil-source-offset")) for r in dead)
        if offsets == bad or time.monotonic() > deadline:
            break
        assert worker.alive(), worker.log()[-3000:]
        time.sleep(1)
    assert offsets == bad, offsets
    assert {_header(r, "vigil-reason") for r in dead} == {"corrupt_batch"}
    assert all(_header(r, "vigil-source-partition") == "0" for r in dead)
    processed = sorted(
        off for rec in env.read("audit", idle_s=1.0) for off in orjson.loads(rec.value)["offsets"]
    )
    assert processed == list(range(PER_BATCH)) + list(range(2 * PER_BATCH, 3 * PER_BATCH))
    assert worker.alive()
    rejected = worker.metrics().get('vigil_events_rejected_total{reason="corrupt_batch"}')
    assert rejected == PER_BATCH, rejected
