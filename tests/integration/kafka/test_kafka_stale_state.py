"""A worker whose local state is ahead of its changelog (topics rebuilt) starts cleanly.

Regression: the worker kept its --data-dir while the topics were deleted and created again.
Faust either stopped it with ConsistencyError or, with an empty changelog, restored the old
state, whose checkpoint made the engine skip the new topic's first offsets as already seen.
"""

from __future__ import annotations

import time

from tests.plugins.kafka import T0, KafkaEnv, event, wait_until


def _rebuild_topics(env: KafkaEnv) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    try:
        ours = [t for t in admin.list_topics() if t.startswith(env.prefix)]
        admin.delete_topics(ours)
        deadline = time.monotonic() + 60
        while any(t.startswith(env.prefix) for t in admin.list_topics()):
            assert time.monotonic() < deadline, "topics not deleted"
            time.sleep(0.5)
    finally:
        admin.close()
    time.sleep(2)  # the broker finishes removing the logs before a topic of that name returns
    env.create_topics()


def test_state_ahead_of_changelog_is_discarded_and_rebuilt(kafka_env):
    env = kafka_env
    env.write_config(partitions=2)
    env.create_topics()
    w = env.start_worker("w")
    env.produce([event(f"acct_{i % 20}", T0 + i, f"old-{i}") for i in range(300)])
    wait_until(lambda: w.metric_sum("vigil_events_consumed_total") >= 300, "first run not consumed")
    time.sleep(3)  # a few checkpoints: the local state records its changelog offsets
    w.stop()
    assert w.proc.returncode == 0, w.log()[-3000:]

    _rebuild_topics(env)
    w2 = env.start_worker("w")  # the same --data-dir
    assert w2.metric_sum("vigil_state_discarded_partitions_total") >= 1, w2.log()[-3000:]
    assert "ahead of its changelog" in w2.log()

    # The new topic's offsets start at 0 again; none may be taken for already seen.
    env.produce([event(f"acct_{i % 20}", T0 + 10_000 + i, f"new-{i}") for i in range(100)])
    wait_until(
        lambda: w2.metric_sum("vigil_events_consumed_total") >= 100, "new events not consumed"
    )
    time.sleep(2)
    assert w2.metric_sum("vigil_events_skipped_on_resume_total") == 0
    assert w2.metric_sum("vigil_events_consumed_total") == 100
    assert w2.alive()
    code, body = w2.get("/health")
    assert code == 200, body
