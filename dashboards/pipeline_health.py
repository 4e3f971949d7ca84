"""Pipeline health: is Vigil keeping up with its input, and can it recover if restarted?"""

from __future__ import annotations

from dashboards.grafana import (
    dashboard,
    quantile,
    rate,
    sel,
    standard_variables,
    stat,
    target,
    thresholds,
    timeseries,
)

UID = "vigil-pipeline-health"
# `up` exists for every scrape job; "All" jobs must not count Prometheus or Alertmanager.
WORKERS_UP = "sum(" + sel("up", 'job=~"vigil-.+"') + ")"
# The latency objective's bucket (deploy/prometheus/rules/vigil-oncall.yml): 120 s.
WITHIN_OBJECTIVE = 'le="120.0"'
CHECKPOINT_STEPS = thresholds((None, "green"), (600, "orange"), (900, "red"))


def _sum_rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(metric)})"


def build() -> dict:
    panels = [
        stat(
            "Workers up",
            "Vigil scrape targets (jobs named vigil-*) that answered their last scrape.",
            [target(WORKERS_UP, "up")],
            "short",
            width=4,
        ),
        stat(
            "Events in per second",
            "Input records read per second, good or bad.",
            [target(_sum_rate("vigil_events_read_total"), "read/s")],
            "short",
            width=5,
        ),
        stat(
            "Dead-letter share",
            "Share of input records rejected to the dead-letter sink.",
            [
                target(
                    f"{_sum_rate('vigil_events_rejected_total')} / "
                    f"{_sum_rate('vigil_events_read_total')}",
                    "rejected share",
                )
            ],
            "percentunit",
            width=5,
            defaults={"thresholds": thresholds((None, "green"), (0.02, "red"))},
        ),
        stat(
            "Oldest checkpoint",
            "Age of the oldest last-completed checkpoint among the selected workers.",
            [target(f"max({sel('vigil_checkpoint_age_seconds')})", "age")],
            "s",
            width=5,
            defaults={"thresholds": CHECKPOINT_STEPS},
        ),
        stat(
            "Workers recovering",
            "Workers restoring their state stores after a restart or rebalance.",
            [target(f"sum({sel('vigil_recovery_in_progress')})", "recovering")],
            "short",
            width=5,
        ),
        timeseries(
            "Events per second in and out",
            "Records read (in), processed and dead-lettered (out), dropped as duplicates, "
            "consumed from Kafka by the workers, and forwarded to the partition that owns "
            "their account: a producer keyed by account with the partitioner the workers "
            "are told of ([kafka] input_partitioner) has none forwarded.",
            [
                target(_sum_rate("vigil_events_read_total"), "read"),
                target(_sum_rate("vigil_events_processed_total"), "processed"),
                target(_sum_rate("vigil_events_rejected_total"), "dead-lettered"),
                target(_sum_rate("vigil_events_duplicate_total"), "duplicates"),
                target(_sum_rate("vigil_events_consumed_total"), "consumed from Kafka"),
                target(_sum_rate("vigil_events_repartitioned_total"), "forwarded"),
            ],
            "short",
        ),
        timeseries(
            "Consumer lag by partition",
            "Records in each input partition not yet consumed by its worker.",
            [
                target(
                    f"sum by (topic, partition) ({sel('vigil_consumer_lag')})",
                    "{{topic}}/{{partition}}",
                )
            ],
            "short",
        ),
        timeseries(
            "Event-time lag",
            "Wall clock minus the event time of the newest event in each batch: how far "
            "behind real time detection runs.",
            [
                target(quantile(0.5, "vigil_event_time_lag_seconds"), "p50"),
                target(quantile(0.99, "vigil_event_time_lag_seconds"), "p99"),
                target(f"time() - max({sel('vigil_watermark_timestamp_seconds')})", "watermark"),
            ],
            "s",
        ),
        timeseries(
            "Processing latency per batch",
            "Wall time to process one batch of events, p50 and p99.",
            [
                target(quantile(0.5, "vigil_processing_latency_seconds"), "p50"),
                target(quantile(0.99, "vigil_processing_latency_seconds"), "p99"),
            ],
            "s",
        ),
        timeseries(
            "Event-to-alert latency",
            "Wall time from the stream reaching a window's end to that window's alerts, p50 "
            "and p99; the objective is 99% within 120 s (about the allowed lateness plus "
            "processing on a live stream).",
            [
                target(quantile(0.5, "vigil_alert_latency_seconds"), "p50"),
                target(quantile(0.99, "vigil_alert_latency_seconds"), "p99"),
            ],
            "s",
        ),
        timeseries(
            "Alerts within the latency objective",
            "Share of alerts that left within 120 s of their window's end; the objective is "
            "99%. The burn-rate alerts fire when this stays low.",
            [
                target(
                    f"sum by (job) ({rate('vigil_alert_latency_seconds_bucket', WITHIN_OBJECTIVE)})"
                    f" / {_sum_rate('vigil_alert_latency_seconds_count', 'job')}",
                    "{{job}}",
                )
            ],
            "percentunit",
        ),
        timeseries(
            "Dead-letter rate by reason",
            "Rejected records per second, by the contract rule they broke.",
            [target(_sum_rate("vigil_events_rejected_total", "reason"), "{{reason}}")],
            "short",
            stacked=True,
        ),
        timeseries(
            "Workers and rebalances",
            "Workers answering scrapes, consumer-group rebalances per second, and the input "
            "partitions each worker owns.",
            [
                target(WORKERS_UP, "workers up"),
                target(_sum_rate("vigil_rebalances_total"), "rebalances/s"),
                target(
                    f"sum by (instance) ({sel('vigil_owned_partitions')})",
                    "{{instance}} partitions",
                ),
            ],
            "short",
        ),
        timeseries(
            "Event time held back",
            "How far the event time windows close on trails each worker's newest event, "
            "and the input partitions its engines skip as idle (silent and read to their "
            "end) or wait for as late (silent with records no one has sent on yet).",
            [
                target(
                    f"max by (instance) ({sel('vigil_event_time_held_seconds')})",
                    "{{instance}} held s",
                ),
                target(f"max by (instance) ({sel('vigil_idle_sources')})", "{{instance}} idle"),
                target(f"max by (instance) ({sel('vigil_late_sources')})", "{{instance}} late"),
            ],
            "short",
        ),
        timeseries(
            "Backlog waiting",
            "Closed windows each worker's engines have not scored yet (held for campaign "
            "figures, or behind them), input partitions paused by backpressure, and "
            "partitions with changes not yet in a committed checkpoint (under exactly_once, "
            "alerts not yet visible). The first two fall to 0 once a backlog is worked off, the "
            "third at each checkpoint.",
            [
                target(
                    f"max by (instance) ({sel('vigil_unscored_windows')})",
                    "{{instance}} windows unscored",
                ),
                target(
                    f"max by (instance) ({sel('vigil_input_paused_partitions')})",
                    "{{instance}} paused",
                ),
                target(
                    f"max by (instance) ({sel('vigil_uncheckpointed_partitions')})",
                    "{{instance}} uncheckpointed",
                ),
            ],
            "short",
        ),
        timeseries(
            "Checkpoint age",
            "Seconds since each worker's last completed checkpoint.",
            [target(f"max by (instance) ({sel('vigil_checkpoint_age_seconds')})", "{{instance}}")],
            "s",
            defaults={"thresholds": CHECKPOINT_STEPS},
        ),
        timeseries(
            "Active accounts",
            "Accounts whose state is held in memory, per worker.",
            [target(f"sum by (instance) ({sel('vigil_active_accounts')})", "{{instance}}")],
            "short",
        ),
        timeseries(
            "Evicted accounts per second",
            "Idle accounts whose state was evicted to bound memory.",
            [target(_sum_rate("vigil_accounts_evicted_total"), "evicted/s")],
            "short",
        ),
        timeseries(
            "Store sink lag and errors",
            "Records the store sink has yet to copy into the console's store, per topic, and "
            "records per second it could not store, per kind.",
            [
                target(f"sum by (topic) ({sel('vigil_store_sink_lag')})", "lag {{topic}}"),
                target(_sum_rate("vigil_store_sink_errors_total", "kind"), "errors/s {{kind}}"),
                target(_sum_rate("vigil_store_sink_records_total", "topic"), "stored/s {{topic}}"),
            ],
            "short",
        ),
    ]
    return dashboard(
        UID,
        "Vigil / Pipeline health",
        "Throughput, lag, latency, dead letters, workers and checkpoints of the Vigil pipeline.",
        panels,
        standard_variables(),
    )
