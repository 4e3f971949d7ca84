"""A worker frozen past its session timeout writes no state for the partitions it lost.

Regression (fault soak on three brokers, at_least_once): a worker stopped with SIGSTOP past
its session timeout resumed and, on the revoke that followed, checkpointed partitions the
other worker had owned since the broker dropped it. Its writes interleaved with the new
owner's in the changelog and deleted an id segment the new owner's manifest still named;
when a worker later restored that partition from the changelog, it stopped on "the
changelog is incomplete". Alone in its group here, the frozen worker's own checkpoints
are the only writes the changelog can get, so any write after the freeze is one it must
not make.
"""

from __future__ import annotations

import signal
import time

from tests.plugins.kafka import SESSION_TIMEOUT_S, T0, KafkaEnv, event, wait_until


def _changelog_records(env: KafkaEnv) -> int:
    from kafka import KafkaConsumer, TopicPartition

    topic = env.topic("changelog")
    c = KafkaConsumer(bootstrap_servers=env.bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert tps, f"no changelog topic {topic}"
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def _synced(log: str) -> int:
    return log.count("Successfully synced group")


def test_a_worker_frozen_past_its_session_timeout_writes_no_state_on_resuming(kafka_env):
    env = kafka_env
    env.create_topics()
    # No periodic checkpoint in the test's time: state is written only on a revoke or a stop.
    w = env.start_worker("b", extra_args=["--checkpoint-interval", "600"])
    lines = [event(f"acct_{i % 40}", T0 + i, f"e-{i}") for i in range(400)]
    env.produce(lines)
    wait_until(lambda: w.metric_sum("vigil_events_consumed_total") >= len(lines), "not consumed")
    written = _changelog_records(env)
    synced = _synced(w.log())

    w.proc.send_signal(signal.SIGSTOP)
    time.sleep(SESSION_TIMEOUT_S + 4)  # the broker drops it from the group meanwhile
    w.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: _synced(w.log()) > synced, "the worker did not rejoin its group", 60)
    wait_until(lambda: w.metric_sum("vigil_owned_partitions") == env.partitions, "not reassigned")
    time.sleep(2)  # what a revoke's checkpoint would have written has landed by now

    assert _changelog_records(env) == written, w.log()[-4000:]
    assert w.metric_sum("vigil_checkpoints_withheld_total") >= 1
    assert "checkpoint of partitions [0, 1, 2, 3] withheld" in w.log()

    # Back in its group, it writes again: the final checkpoint on SIGTERM, which a restart
    # resumes from.
    time.sleep(SESSION_TIMEOUT_S / 2)  # heartbeats of the new membership answered
    w.stop()
    assert w.proc.returncode == 0, w.log()[-4000:]
    assert _changelog_records(env) > written
    assert env.unreadable_checkpoints() == {}
    w2 = env.start_worker("b")
    env.produce([event(f"acct_{i % 40}", T0 + 400 + i, f"f-{i}") for i in range(40)])
    wait_until(lambda: "resumed from checkpoint" in w2.log(), "no partition resumed", 60)
    assert w2.alive() and "cannot be used" not in w2.log()
