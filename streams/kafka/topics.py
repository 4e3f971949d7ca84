"""Creates Vigil's topics when they are missing."""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.config import KafkaConfig
from streams.kafka.settings import WorkerSettings
from streams.runtime.kafka_client import kafka_python_options


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()


def topic_specs(cfg: KafkaConfig, settings: WorkerSettings) -> list[TopicSpec]:
    n = cfg.partitions
    specs = [
        TopicSpec(cfg.input_topic, n),
        TopicSpec(settings.repartition_topic(cfg), n),
        TopicSpec(settings.campaign_topic(cfg), n),
        TopicSpec(cfg.alerts_topic, n),
        TopicSpec(cfg.dead_letter_topic, n),
        # The console reads the latest snapshot per account; older ones can go.
        TopicSpec(cfg.snapshots_topic, n, (("cleanup.policy", "compact"),)),
    ]
    compact = (("cleanup.policy", "compact"),)
    # The state table's changelog, named as Faust names it. Faust would create it itself
    # at start-up and check its partitions at once; on a cluster the other brokers may not
    # know it yet, and the worker stopped with PartitionsMismatch (seen in the fault soak).
    specs.append(TopicSpec(f"{cfg.group_id}-{settings.state_table}-changelog", n, compact))
    # Every worker reads both whole; the latest record per key is the state (control.py).
    specs += [TopicSpec(cfg.control_topic, 1, compact), TopicSpec(cfg.snoozes_topic, 1, compact)]
    if settings.shadow_model:
        specs.append(TopicSpec(cfg.shadow_alerts_topic, n))
    if settings.audit_topic:
        specs.append(TopicSpec(settings.audit_topic, 1))
    return specs


RETRY_S = 30.0  # how long a cluster that is still electing its controller is waited for


def ensure_topics(cfg: KafkaConfig, specs: list[TopicSpec]) -> list[str]:
    """Creates the missing topics; returns the names it created.

    A cluster that has just started (or lost a node) may name a controller its metadata
    does not list yet (UnknownBrokerIdError, seen in the fault soak on a fresh 3-broker
    cluster); such transient errors are retried with a new client for up to RETRY_S.
    """
    import time

    from kafka.errors import KafkaError, UnknownBrokerIdError

    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            return _ensure_topics(cfg, specs)
        except KafkaError as exc:
            transient = getattr(exc, "retriable", False) or isinstance(exc, UnknownBrokerIdError)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _ensure_topics(cfg: KafkaConfig, specs: list[TopicSpec]) -> list[str]:
    """One attempt of ensure_topics.

    An existing input topic with a partition count other than the configured one is an
    error: per-account state is placed by partition, so the counts must agree.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(client_id="vigil-admin", **kafka_python_options(cfg))
    try:
        existing = {
            t.get("topic", t.get("name")): len(t["partitions"])
            for t in admin.describe_topics([s.name for s in specs if s.name in admin.list_topics()])
        }
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for s in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            s.name,
                            num_partitions=s.partitions,
                            replication_factor=cfg.replication_factor,
                            topic_configs=dict(s.config),
                        )
                    ]
                )
                created.append(s.name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        have = existing.get(cfg.input_topic)
        if have is not None and have != cfg.partitions:
            raise ValueError(
                f"topic {cfg.input_topic} has {have} partitions but kafka.partitions is "
                f"{cfg.partitions}; set kafka.partitions to {have}"
            )
        return created
    finally:
        admin.close()
