"""The worker's process and client settings, checked in a child process on the real broker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streams.kafka import fetch
from streams.runtime import process


def test_the_worker_s_fetch_settings_reach_aiokafka(kafka_bootstrap):
    # Faust passes fetch_max_wait_ms=1500. With one fetch in flight per broker, a fetch of
    # idle partitions then held the input partitions back for 1.5 s at a time. Run in a
    # child: the session's browser fixture keeps an event loop running in this thread.
    code = f"""
import asyncio
from streams.core.config import KafkaConfig, VigilConfig
from streams.kafka.app import build_worker
from streams.kafka.settings import WorkerSettings

cfg = VigilConfig(kafka=KafkaConfig(bootstrap_servers="{kafka_bootstrap}"))
worker = build_worker(cfg, WorkerSettings(fetch_max_wait_ms=123))

async def started_fetch_wait():
    thread = worker.app.consumer._thread
    consumer = thread._create_worker_consumer(worker.app.transport)
    await consumer.start()
    try:
        node = consumer._client.cluster.brokers().pop().nodeId
        connection = await consumer._client._get_conn(node)
        return consumer._fetcher._fetch_max_wait_ms, connection._reader._limit
    finally:
        await consumer.stop()

print(*asyncio.run(started_fetch_wait()))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    wait, limit = map(int, out.stdout.split()[-2:])
    assert wait == 123
    # ... and its connections read whole fetch responses without pausing the socket.
    assert limit == fetch.READER_LIMIT


def test_run_worker_tunes_the_process_before_faust_starts(kafka_bootstrap):
    # The collector threshold and the GIL switch interval are process-wide, so they are
    # checked in a child, at the moment Faust's worker would take over.
    code = f"""
import gc, sys
import streams.kafka.app as app
from streams.core.config import KafkaConfig, VigilConfig
from streams.kafka.settings import WorkerSettings

def started(*args, **kwargs):
    print(sys.getswitchinterval(), gc.get_threshold()[0])
    raise SystemExit(0)

app.faust_worker = started
cfg = VigilConfig(kafka=KafkaConfig(bootstrap_servers="{kafka_bootstrap}", input_topic="tune-in"))
app.run_worker(cfg, WorkerSettings())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    interval, threshold = out.stdout.split()[-2:]
    assert float(interval) == pytest.approx(process.SWITCH_INTERVAL_S)
    assert int(threshold) == process.GC_THRESHOLDS[0]
