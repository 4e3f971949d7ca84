"""A checkpoint in the changelog that cannot be read stops the worker with one line, and
`--discard-unreadable-state` opens that partition empty instead.

Regression: a corrupt chunk in the state changelog made the worker crash with a traceback
at the partition's first batch, and again after every restart, with nothing saying what
an operator could do.
"""

from __future__ import annotations

import time

import orjson

from streams.kafka.checkpoint import chunk_key, manifest_key
from streams.kafka.consumer import UNUSABLE_CHECKPOINT_EXIT
from tests.plugins.kafka import T0, KafkaEnv, event, wait_until


def _corrupt_state_chunk(env: KafkaEnv) -> None:
    """Overwrites the first chunk of partition 0's latest checkpoint in the changelog."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = f"{env.config.kafka.group_id}-engine-state-changelog"
    c = KafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    manifest = None
    while c.position(tp) < end:
        for recs in c.poll(timeout_ms=1000).values():
            for r in recs:
                if r.key == manifest_key(0) and r.value:
                    manifest = orjson.loads(r.value)
    c.close()
    assert manifest is not None, "the first worker wrote no checkpoint"
    p = KafkaProducer(bootstrap_servers=env.bootstrap)
    p.send(topic, b"not a checkpoint", chunk_key(0, manifest["generation"], 0), partition=0)
    p.flush()
    p.close()


def test_unreadable_checkpoint_stops_in_one_line_then_discarding_it_resumes(kafka_env):
    env = kafka_env
    env.write_config(partitions=1)
    env.create_topics()
    w = env.start_worker("w1")
    env.produce([event(f"acct_{i % 20}", T0 + i, f"a-{i}") for i in range(300)])
    wait_until(lambda: w.metric_sum("vigil_events_consumed_total") >= 300, "first run not consumed")
    time.sleep(3)  # a few checkpoints
    w.stop()
    assert w.proc.returncode == 0, w.log()[-3000:]
    _corrupt_state_chunk(env)

    # A fresh data dir: the table is rebuilt from the changelog, corrupt chunk and all.
    w2 = env.start_worker("w2")
    env.produce([event(f"acct_{i % 20}", T0 + 1_000 + i, f"b-{i}") for i in range(50)])
    w2.proc.wait(timeout=90)
    log = w2.log()
    assert w2.proc.returncode == UNUSABLE_CHECKPOINT_EXIT, log[-3000:]
    said = [line for line in log.splitlines() if "its checkpoint cannot be used" in line]
    assert len(said) == 1 and "--discard-unreadable-state" in said[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    w3 = env.start_worker("w3", extra_args=["--discard-unreadable-state"])
    env.produce([event(f"acct_{i % 20}", T0 + 2_000 + i, f"c-{i}") for i in range(50)])
    # The 50 the stopped worker never applied, then the 50 new ones.
    wait_until(lambda: w3.metric_sum("vigil_events_consumed_total") >= 100, "not resumed")
    time.sleep(2)
    assert w3.metric_sum("vigil_events_consumed_total") == 100
    assert w3.metric_sum("vigil_state_discarded_partitions_total") == 1
    assert "opened empty from the committed offsets" in w3.log()
    assert w3.alive() and w3.get("/health")[0] == 200
    w3.stop()
    assert w3.proc.returncode == 0, w3.log()[-3000:]

    # The checkpoint written after the discard is whole: a worker without the flag resumes.
    w4 = env.start_worker("w4")
    env.produce([event(f"acct_{i % 20}", T0 + 3_000 + i, f"d-{i}") for i in range(10)])
    wait_until(lambda: w4.metric_sum("vigil_events_consumed_total") >= 10, "not resumed after")
    time.sleep(2)
    assert w4.metric_sum("vigil_events_consumed_total") == 10
    assert w4.metric_sum("vigil_state_discarded_partitions_total") == 0
    assert w4.alive(), w4.log()[-3000:]
