"""Metrics only a Kafka worker has, on the same registry as the engine's `Metrics`."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.consumer_lag = Gauge(
            "vigil_consumer_lag",
            "Messages between the high watermark and the worker's position",
            ["topic", "partition"],
            registry=r,
        )
        self.rebalances = Counter(
            "vigil_rebalances", "Consumer group rebalances seen by this worker", registry=r
        )
        self.recovery_in_progress = Gauge(
            "vigil_recovery_in_progress",
            "1 while table state is being restored from changelogs",
            registry=r,
        )
        self.recovery_seconds = Gauge(
            "vigil_recovery_duration_seconds",
            "Seconds the current (or last) table recovery has taken",
            registry=r,
        )
        self.events_consumed = Counter(
            "vigil_events_consumed",
            "Input records taken off Kafka and handed to the engine or the dead-letter topic",
            registry=r,
        )
        self.events_repartitioned = Counter(
            "vigil_events_repartitioned",
            "Input records forwarded to the partition that owns their account",
            registry=r,
        )
        self.events_skipped = Counter(
            "vigil_events_skipped_on_resume",
            "Records already covered by the restored checkpoint and not applied again, and "
            "copies of forwarded events a restored source sent again",
            registry=r,
        )
        self.batches_refetched = Counter(
            "vigil_batches_refetched",
            "Fetched batches that started past their engine's next offset: dropped and read "
            "again from it",
            registry=r,
        )
        self.batch_failures = Counter(
            "vigil_batch_failures",
            "Batches whose processing raised; their events were retried one by one",
            registry=r,
        )
        self.snapshot_failures = Counter(
            "vigil_snapshot_failures",
            "Checkpoints whose console snapshots could not be built and were skipped",
            registry=r,
        )
        self.checkpoint_seconds = Gauge(
            "vigil_checkpoint_duration_seconds",
            "Wall time of the last checkpoint (flush, state, flush, commit)",
            registry=r,
        )
        self.checkpoints_withheld = Counter(
            "vigil_checkpoints_withheld",
            "Checkpoints not written because the worker may no longer be in its consumer "
            "group (its last answered heartbeat is older than half the session timeout, or "
            "the broker answered that it is out): its partitions may be another's by now",
            registry=r,
        )
        self.exchange_commits = Counter(
            "vigil_exchange_commits",
            "exactly_once: transactions committed between checkpoints to publish the "
            "campaign exchange's records, event-time marks and forwarded events",
            registry=r,
        )
        self.campaign_requests_stale = Counter(
            "vigil_campaign_requests_stale",
            "Campaign requests that reached their key owner after it had applied their window "
            "without them: that window's campaign figures left the sender's accounts out",
            registry=r,
        )
        self.checkpoint_bytes = Gauge(
            "vigil_checkpoint_state_bytes",
            "Size of the compressed engine state written at the last checkpoint",
            ["partition"],
            registry=r,
        )
        self.state_discarded = Counter(
            "vigil_state_discarded_partitions",
            "Local state partitions deleted and rebuilt from the changelog: at start-up after "
            "a worker that did not stop cleanly, or when ahead of their changelog (cluster or "
            "topics rebuilt); and checkpoints dropped by --discard-unreadable-state",
            registry=r,
        )
        self.owned_partitions = Gauge(
            "vigil_owned_partitions", "Input partitions this worker owns", registry=r
        )
        self.idle_sources = Gauge(
            "vigil_idle_sources",
            "Input partitions silent for worker.source_idle_s, which no longer hold back "
            "event time (the most over this worker's engines)",
            registry=r,
        )
        self.late_sources = Gauge(
            "vigil_late_sources",
            "Input partitions silent for worker.source_idle_s whose records the consumer "
            "group has not all committed: they still hold back event time, until their "
            "owner sends them on (the most over this worker's engines)",
            registry=r,
        )
        self.offset_readings = Counter(
            "vigil_input_offset_readings",
            "Readings of every input partition's end and committed offsets, taken while a "
            "source is silent, by outcome (ok, failed: silence alone then decides idleness)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("ok", "failed"):  # exported from start-up, so rates read 0, not nothing
            self.offset_readings.labels(outcome)
        self.input_paused = Gauge(
            "vigil_input_paused_partitions",
            "Input partitions paused because an engine holds more closed windows not yet "
            "scored than worker.max_unscored_windows, or because their event time leads the "
            "slowest source's by more than worker.max_source_lead_s, or, but for the "
            "slowest, because the engines hold more than worker.max_unscored_bytes",
            registry=r,
        )
        self.unscored_bytes = Gauge(
            "vigil_unscored_bytes",
            "About the bytes this worker's engines hold in events not yet scored (open "
            "windows, and closed ones waiting for campaign figures); bounded by "
            "worker.max_unscored_bytes",
            registry=r,
        )
        self.unscored_windows = Gauge(
            "vigil_unscored_windows",
            "Closed windows this worker's engines have not scored yet: held for their "
            "campaign figures, or waiting to begin behind them",
            registry=r,
        )
        self.uncheckpointed = Gauge(
            "vigil_uncheckpointed_partitions",
            "Partitions whose engine changed since its last checkpoint, or whose checkpoint "
            "is still being written: under exactly_once their alerts are not yet visible to "
            "read_committed readers",
            registry=r,
        )
        self.input_pauses = Counter(
            "vigil_input_pauses",
            "Times the input went from no partition paused to some (backpressure)",
            registry=r,
        )
        self.event_time_held = Gauge(
            "vigil_event_time_held_seconds",
            "How far the event time windows close on trails an engine's newest event, "
            "waiting for the slowest input partition (the most over this worker's engines)",
            registry=r,
        )
