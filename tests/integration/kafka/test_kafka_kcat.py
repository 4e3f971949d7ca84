"""An independent client: kcat (librdkafka) writes events and reads the resulting alert.

librdkafka partitions keys with CRC32, not the Java client's murmur2, so its records can
land outside the partition that owns their account; the worker forwards those itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import orjson
import pytest

from tests.plugins.kafka import REPO, T0, account_in_partition, event, watermark_pushers


def _kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail(
            "kcat is needed: `sudo apt-get install -y kcat` (macOS: `brew install kcat`)",
            pytrace=False,
        )
    return path


def test_kcat_events_in_alert_out(kafka_env):
    kcat = _kcat()
    env = kafka_env
    env.write_config(partitions=4)
    env.create_topics()
    worker = env.start_worker("w")

    acct = "acct_kcat_free"
    # Five requests of 60k tokens in one window on the free plan: over the 200k quota.
    requests = [
        event(acct, T0 + 30 * i, f"kc-{i}", plan="free", prompt_tokens=60_000) for i in range(5)
    ]
    pushers = watermark_pushers(4, T0 + 3600, tag="kc-end")
    events = requests + pushers

    def kcat_produce(lines: list[bytes]) -> None:
        payload = b"".join(orjson.loads(e)["account_id"].encode() + b"|" + e + b"\n" for e in lines)
        subprocess.run(
            [kcat, "-b", env.bootstrap, "-t", env.topic("input"), "-P", "-K", "|"],
            input=payload,
            check=True,
            timeout=60,
        )

    # CRC32 puts the requests and the pusher meant for their owner's partition on two
    # other input partitions, and both are forwarded to the owner. Sent together, the
    # pusher can get there first and close the window, and the requests are then
    # dead-lettered as too late: the pushers go out once the requests are in the engine.
    kcat_produce(requests)
    deadline = time.monotonic() + 60
    while worker.metric_sum("vigil_events_consumed_total") < len(requests):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.3)
    kcat_produce(pushers)

    deadline = time.monotonic() + 60
    alerts: list[dict] = []
    while time.monotonic() < deadline and not alerts:
        out = subprocess.run(
            [
                kcat,
                "-b",
                env.bootstrap,
                "-t",
                env.topic("alerts"),
                "-C",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%k\t%s\n",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        alerts = [
            {"key": k.decode(), **orjson.loads(v)}
            for k, v in (ln.split(b"\t", 1) for ln in out.splitlines() if ln)
        ]
        time.sleep(0.5)
    assert alerts, worker.log()[-3000:]
    mine = [a for a in alerts if a["account_id"] == acct]
    assert mine and all(a["key"] == acct for a in mine)
    assert mine[0]["category"] == "free_tier_farming"
    assert mine[0]["window"]["start"].startswith("2026-10-01T00:00")
    assert worker.metric_sum("vigil_events_consumed_total") == len(events)

    # `vigil alerts tail` reads the same alert back.
    tail = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "alerts",
            "tail",
            "--from-beginning",
            "--max",
            str(len(alerts)),
            "--timeout",
            "20",
            "--config",
            str(env.config_path),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    tailed = [orjson.loads(x) for x in tail.splitlines() if x]
    assert {a["alert_id"] for a in tailed} == {a["alert_id"] for a in alerts}


def test_every_compression_codec_is_read(kafka_env):
    # A producer may compress its batches with any codec Kafka knows; librdkafka's kcat
    # writes each one. A codec the worker cannot read used to stop it on the first batch.
    kcat = _kcat()
    env = kafka_env
    env.write_config(partitions=2)
    env.create_topics()
    worker = env.start_worker("w")
    total = 0
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        lines = [
            event(f"acct_{codec}_{i % 5}", T0 + i, f"{codec}-{i}", prompt_tokens=10)
            for i in range(200)
        ]
        subprocess.run(
            [kcat, "-b", env.bootstrap, "-t", env.topic("input"), "-P", "-z", codec],
            input=b"\n".join(lines) + b"\n",
            check=True,
            timeout=60,
        )
        total += len(lines)
        deadline = time.monotonic() + 60
        while worker.metric_sum("vigil_events_consumed_total") < total:
            assert worker.alive(), f"{codec}: the worker stopped\n" + worker.log()[-3000:]
            assert time.monotonic() < deadline, f"{codec}\n" + worker.log()[-3000:]
            time.sleep(0.3)
    assert worker.metric_sum("vigil_events_consumed_total") == total


def test_an_event_too_large_to_forward_is_dead_lettered_where_it_is_read(kafka_env):
    # An event read on another partition than its account's is forwarded to it, but one
    # over max_line_bytes is dead-lettered where it is read, as its engine would. The
    # input topic may take larger records than the repartition topic: here the input
    # takes this broker's 4 MiB and the repartition topic a default broker's 1 MiB.
    # Forwarding such a record failed its batch, and the checkpoint after it.
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    kcat = _kcat()
    env = kafka_env
    env.write_config(partitions=2)
    env.create_topics()
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    try:
        limit = {"max.message.bytes": "1048588"}
        topic = env.topic("repartition")
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, limit)])
    finally:
        admin.close()
    worker = env.start_worker("w")
    acct = account_in_partition(0, 2, "acct_big")
    big = event(acct, T0 + 5, "big-1", user_agent="x" * 1_500_000)
    small = [event(acct, T0 + 10 + i, f"small-{i}") for i in range(5)]
    for lines in ([big], small):  # both on partition 1, not their account's
        subprocess.run(
            [kcat, "-b", env.bootstrap, "-t", env.topic("input"), "-P", "-p", "1"]
            + ["-X", "message.max.bytes=4000000"],
            input=b"\n".join(lines) + b"\n",
            check=True,
            timeout=60,
        )
    env.produce(watermark_pushers(2, T0 + 3600))

    dead = env.read("dead", until=1, timeout_s=60)
    assert len(dead) == 1, worker.log()[-3000:]
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["vigil-reason"] == "too_large"
    assert headers["vigil-source-topic"] == env.topic("input")
    assert headers["vigil-original-bytes"] == str(len(big))
    # The small events were forwarded and scored, and checkpoints went on past them all.
    deadline = time.monotonic() + 90
    while worker.metric_sum("vigil_events_processed_total") < len(small) or env.committed(
        "input", 1
    ) < 1 + len(small):
        assert worker.alive(), worker.log()[-3000:]
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)
    assert worker.metric_sum("vigil_events_repartitioned_total") == len(small)
    assert worker.alive()
