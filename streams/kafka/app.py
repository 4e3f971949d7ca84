"""The Faust application behind `vigil worker`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from streams.core.config import VigilConfig, flow_bounds
from streams.kafka import fetch
from streams.kafka.consumer import BatchTransport
from streams.kafka.control import install as install_control
from streams.kafka.control import start_control
from streams.kafka.health import HealthInputs, evaluate
from streams.kafka.held_dead_letters import HeldDeadLetters, alert_sinks
from streams.kafka.internals import AppHooks, enable_transactions, install_fetcher
from streams.kafka.metrics import WorkerMetrics
from streams.kafka.processor import Processor, Topics
from streams.kafka.settings import WorkerSettings, ensure_data_dir
from streams.kafka.stale_state import (
    discard_after_crash,
    discard_stale_state,
    hold_data_dir,
    mark_clean_stop,
)
from streams.kafka.state_table import state_table
from streams.kafka.transactions import EXACTLY_ONCE, Transactions, table_settings
from streams.kafka.watermarks import EventTime
from streams.runtime.kafka_client import broker_url, faust_credentials
from streams.runtime.process import tune_gc, tune_malloc, tune_threads

log = logging.getLogger(__name__)
CONTROL_CATCH_UP_S = 30.0
# The producer's record batches, Faust's 16 KiB by default. Forwarded events go in whole
# batches (outputs.send_batches), and aiokafka queues a new batch for a partition only
# once the last one left for the broker, so each small batch waited for a round trip:
# with kcat's default partitioner, 512 KiB ran the worker about 40% faster, and with
# murmur2 (nothing forwarded) it made no difference (docs/kafka.md, "Forwarding in
# batches"). Below Faust's producer_max_request_size, 1,000,000 bytes.
PRODUCER_BATCH_BYTES = 512 * 1024


class VigilApp(AppHooks):
    """Faust's App with the batch consumer and checkpoint hooks on rebalance and stop."""

    processor: Processor | None = None
    worker_metrics: WorkerMetrics | None = None
    held_dead_letters: HeldDeadLetters | None = None
    local_state: Any = None  # the table kept on local disk (at_least_once), if any
    data_dir_lock: Any = None  # stale_state.hold_data_dir's file, open while running

    def new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def before_revoke(self, revoked: set[TP]) -> None:
        # Before Faust closes the revoked table partitions, so the state can still be written.
        if self.processor is not None and not self.should_stop:
            await self.processor.on_revoked(revoked)

    def before_assign(self, assigned: set[TP]) -> None:
        # Ownership follows the assignment itself: a partition with nothing new to read
        # gets no batch, so counting engines would miss it after every rebalance.
        if self.processor is not None and not self.should_stop:
            self.processor.on_assigned(assigned)

    async def on_stop(self) -> None:
        if self.processor is not None:
            if self.processor.drained is not None:
                self.processor.drained.close()
            await self.close_sinks()
            try:
                await asyncio.wait_for(self.processor.checkpoint(final=True), timeout=30)
            except Exception:
                log.exception("final checkpoint failed; the next owner resumes from the last one")
            else:
                self.mark_clean_stop()
        await super().on_stop()

    def mark_clean_stop(self) -> None:
        """After a final checkpoint that completed (nothing is written after it): the next
        start may keep the local state if the changelog acknowledged every local write."""
        if self.local_state is None or self.processor is None:
            return
        if not self.processor.changelog_behind:
            try:
                mark_clean_stop(self.local_state)
            except OSError as exc:  # the next start rebuilds from the changelog: slower
                log.warning("could not mark a clean stop: %s", exc)

    async def close_sinks(self) -> None:
        # A webhook drains its queue (bounded by its close_timeout_s) and dead-letters the
        # rest; those dead letters then go out with the final checkpoint.
        loop = asyncio.get_running_loop()
        for sink in self.processor.sinks if self.processor else []:
            try:
                await loop.run_in_executor(None, sink.close)
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)
        if self.held_dead_letters is not None and self.processor is not None:
            await self.held_dead_letters.send(self.processor)


@dataclass
class Worker:
    app: VigilApp
    processor: Processor
    metrics: Any
    worker_metrics: WorkerMetrics
    topics: Topics
    control: Any = None  # streams/kafka/control.py, when the worker reads the control topics


def build_worker(
    config: VigilConfig,
    settings: WorkerSettings,
    metrics: Any = None,
    make_engine: Callable[[], Any] | None = None,
    control: bool = False,
    check_model: Callable[[str], Any] | None = None,
) -> Worker:
    from faust.sensors.prometheus import setup_prometheus_sensors

    from streams.contract.codes import DEMO_HASH_KEY
    from streams.core.config_version import config_version
    from streams.engine.metrics import Metrics

    kc = config.kafka
    exactly_once = kc.processing_guarantee == EXACTLY_ONCE
    if config.engine.hash_key == DEMO_HASH_KEY:
        log.warning("engine.hash_key is the public demo key: set VIGIL_HASH_KEY to a secret")
    metrics = metrics or Metrics()
    # Known before any partition (and engine) exists, so the version rule sees every worker.
    metrics.config_info.info({"config_version": config_version(config)})
    wm = WorkerMetrics(metrics.registry)
    ctl = start_control(config, metrics, settings.classifier, check_model) if control else None
    if make_engine is None:
        from streams.engine.engine import Engine, build_detectors
        from streams.engine.shadow import build_shadow

        def make_engine() -> Any:
            # Each engine has its own shadow: its cooldowns follow that engine's accounts.
            shadow = build_shadow(config, settings.shadow_model) if settings.shadow_model else None
            if ctl is not None:  # the latest promotion, config and snoozes
                return Engine(
                    metrics=metrics,
                    emit_snapshots=settings.emit_snapshots,
                    shadow=shadow,
                    campaign_exchange=True,
                    **ctl.engine_kwargs(settings.classifier),
                )
            return Engine(
                config,
                metrics=metrics,
                detectors=build_detectors(config, classifier=settings.classifier),
                emit_snapshots=settings.emit_snapshots,
                shadow=shadow,
                # Always, so one partition runs the same code as eight (campaign.py).
                campaign_exchange=True,
            )

    app = VigilApp(
        kc.group_id,
        broker=broker_url(kc),
        broker_credentials=faust_credentials(kc),
        **table_settings(kc.processing_guarantee),
        datadir=str(ensure_data_dir(settings.data_dir)),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee=kc.processing_guarantee,
        topic_partitions=kc.partitions,
        topic_replication_factor=kc.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.max_poll_records,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        consumer_max_fetch_size=settings.max_partition_fetch_bytes,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 5),
        broker_commit_interval=settings.checkpoint_interval_s,
        stream_recovery_delay=0.2,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
    )
    if exactly_once:
        enable_transactions(app)
    topics = Topics(
        input=kc.input_topic,
        repartition=settings.repartition_topic(kc),
        alerts=kc.alerts_topic,
        dead_letters=kc.dead_letter_topic,
        snapshots=kc.snapshots_topic,
        audit=settings.audit_topic,
        shadow_alerts=kc.shadow_alerts_topic if settings.shadow_model else "",
        campaign=settings.campaign_topic(kc),
    )
    table = state_table(app, settings.state_table, kc.partitions)
    if not exactly_once:  # in memory otherwise: nothing local to go stale
        discard_after_crash(table, kc.partitions, wm.state_discarded)
        discard_stale_state(table, kc, kc.partitions, wm.state_discarded)
        app.local_state = table
    source = app.topic(
        topics.input,
        topics.repartition,
        topics.campaign,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=kc.partitions,
    )

    @app.agent(source, concurrency=1, name="vigil.input")
    async def vigil_input(stream: Any) -> None:
        # The batch consumer delivers these topics to the Processor; this agent exists so
        # Faust subscribes to them and co-partitions them with the state table.
        async for _ in stream:
            raise RuntimeError("a record of the input topics took Faust's per-record path")

    held = HeldDeadLetters()  # what the webhook gives up on, for the dead-letter topic
    unscored, lead = flow_bounds(settings, exactly_once)
    processor = Processor(
        app,
        table,
        topics,
        kc.partitions,
        make_engine,
        metrics,
        wm,
        settings.checkpoint_interval_s,
        settings.dead_letter_max_bytes,
        settings.repartition,
        settings.snapshot_interval_s,
        EventTime(
            kc.partitions,
            settings.source_idle_s,
            config.engine.max_line_bytes,
            config.engine.max_future_s,
        ),
        sinks=alert_sinks(config, metrics, held),
        transactions=(Transactions(app, topics.input) if exactly_once else None),
        exchange_record_bytes=settings.exchange_record_bytes,
        discard_unreadable=settings.discard_unreadable_state,
        max_unscored_windows=unscored,
        max_source_lead_s=lead,
        max_unscored_bytes=settings.max_unscored_bytes,
        exchange_commit_s=settings.exchange_commit_s,
        partitioner=kc.input_partitioner,
    )
    app.processor = processor
    app.held_dead_letters = held
    app.worker_metrics = wm
    consumer = app.consumer
    consumer.batch_topics = frozenset({topics.input, topics.repartition, topics.campaign})
    consumer.fetch_max_wait_ms = settings.fetch_max_wait_ms
    install_fetcher()
    fetch.install(
        consumer.batch_topics,
        {topics.input: processor.router.placement} if processor.router is not None else {},
        # The repartition topic's events are decoded there too: with kcat's default
        # partitioner seven in eight come through it.
        {t: config.engine.max_line_bytes for t in (topics.input, topics.repartition)},
        frozenset({topics.repartition}),
    )
    consumer.batch_handler = processor.on_batch
    processor.group_lease = consumer.group_lease
    consumer.between_fetches = processor.flow_control

    setup_prometheus_sensors(
        app, pattern="/metrics", registry=metrics.registry, name_prefix="faust"
    )
    _add_health(app, processor, wm, settings)
    if ctl is not None:
        install_control(app, processor, ctl)
    return Worker(app, processor, metrics, wm, topics, ctl)


def _add_health(app: VigilApp, processor: Processor, wm: WorkerMetrics, s: WorkerSettings) -> None:
    state: dict[str, Any] = {"recovery_since": None, "started": False}

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        wm.rebalances.inc()

    @app.task
    async def _started() -> None:
        state["started"] = True

    @app.timer(1.0)
    async def _watch() -> None:
        recovering = bool(app.tables.recovery.in_recovery)
        now = time.monotonic()
        if recovering and state["recovery_since"] is None:
            state["recovery_since"] = now
        elif not recovering and state["recovery_since"] is not None:
            state["recovery_since"] = None
        if app.held_dead_letters is not None:
            await app.held_dead_letters.send(processor)
        wm.recovery_in_progress.set(1 if recovering else 0)
        if state["recovery_since"] is not None:
            wm.recovery_seconds.set(now - state["recovery_since"])
        if not recovering:
            await processor.tick()  # marks left to send; idle sources let windows close
        # Quiet topics still get their state and offsets saved.
        idle = processor.checkpoint_due(now)
        if not recovering and idle and processor.changed():
            await processor.checkpoint()
        elif not recovering and processor.exchange_commit_due(now):
            await processor.exchange_commit()

    def inputs() -> HealthInputs:
        lag = 0
        for tp, pos in processor.positions.items():
            if tp in app.consumer.assignment():
                high = app.consumer.highwater(tp)
                lag += max(0, (high or pos) - pos)
        return HealthInputs(
            now=time.monotonic(),
            in_recovery=bool(app.tables.recovery.in_recovery),
            recovery_since=state["recovery_since"],
            last_progress=processor.last_progress,
            lag=lag,
            owned_partitions=len(processor.assigned),
            started=state["started"],
            consumed=processor.consumed,
            processed=processor.metrics.processed_count,
        )

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        code, body = evaluate(inputs(), s.recovery_stuck_s, s.stall_s)
        return web.json(body, status=code)


def run_worker(
    config: VigilConfig, settings: WorkerSettings, check_model: Callable[[str], Any] | None = None
) -> None:
    """Creates missing topics, then runs a worker until SIGTERM/SIGINT."""
    from streams.kafka.topics import ensure_topics, topic_specs

    held = hold_data_dir(settings.data_dir)  # before any local state is read or deleted
    ensure_topics(config.kafka, topic_specs(config.kafka, settings))
    tune_gc()
    tune_threads()
    if not tune_malloc():
        log.info("malloc settings left as they are (not glibc, or set in the environment)")
    worker = build_worker(config, settings, control=True, check_model=check_model)
    worker.app.data_dir_lock = held  # held until the process exits
    # Engines open with the latest promotion, config and snoozes, not the start-up ones.
    worker.control.wait_caught_up(CONTROL_CATCH_UP_S)
    faust_worker(worker.app, settings).execute_from_commandline()


def faust_worker(app: Any, settings: WorkerSettings) -> Any:
    """Faust's worker service around `app`, logging at `settings.loglevel` and no lower."""
    from faust.worker import Worker as FaustWorker

    worker = FaustWorker(app, loglevel=settings.loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG so it can tick on every
    # record: each debug call in the Kafka clients then builds a LogRecord that the
    # handler drops, a few percent of the worker's time. Nobody watches a spinner here.
    worker.spinner = None
    return worker
