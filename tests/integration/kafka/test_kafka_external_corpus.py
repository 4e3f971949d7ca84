"""The worker against replay on traffic Vigil's generator did not make.

`../shared/corpora/ext-a` (679,129 events, 1,067 accounts, 36 hours, "mostly in time
order") is produced by kcat with its default partitioner onto 8 partitions, so most
events reach their engine through the repartition topic, and one worker scores it. Its
alerted accounts must be replay's on the same file, its (account, category) pairs within
PARITY, and it may drop as too_late only what replay drops; under exactly_once, read as
`read_committed`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kafka.test_kafka_event_time import (
    PARTITIONS,
    PRODUCERS,
    _compare,
    _input_records,
    _produce,
    _push_every_partition,
    _wait_consumed,
    _wait_settled,
    make_corpus,
)

EXT_A = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "ext-a" / "events.jsonl.gz"


@pytest.fixture(scope="module")
def ext_a(tmp_path_factory) -> dict:
    if not EXT_A.is_file():
        pytest.fail(
            f"{EXT_A} is missing: this test needs the external corpus beside the checkout "
            "(../shared/corpora/ext-a)",
            pytrace=False,
        )
    return make_corpus(tmp_path_factory.mktemp("ext-a"), events=EXT_A)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_corpus_from_another_source_alerts_as_replay_does(kafka_env, ext_a, guarantee, figures):
    env = kafka_env
    env.write_config(partitions=PARTITIONS, guarantee=guarantee)
    env.create_topics()
    worker = env.start_worker("ext-a")
    _produce(env, ext_a["lines"], PRODUCERS["kcat-default"])
    _push_every_partition(env, ext_a["last"] + 3 * 3600)
    _wait_consumed(worker, _input_records(env), timeout_s=600)
    _wait_settled(worker)
    assert worker.alive()
    exactly_once = guarantee == "exactly_once"
    _compare(f"ext-a, kcat-default, {guarantee}", ext_a, env, worker, figures, exactly_once)
    forwarded = worker.metric_sum("vigil_events_repartitioned_total")
    assert forwarded > len(ext_a["lines"]) / 2
