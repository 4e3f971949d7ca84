"""The worker's reader of the control and snooze topics, and the swap between batches.

Both topics are compacted: the latest value per key is the state. Every worker needs all
of it (a snooze or a promotion is for every partition), so the reader is not a member of
the consumer group: a plain kafka-python consumer assigned every partition of both topics,
reading from the start. It runs in a thread of its own rather than as a Faust agent or
global table: loading a promoted model takes a second of ONNX work that must not stall
the event loop, and a global table would bring a changelog and a RocksDB store for a few
keys that the topic itself already keeps.

The thread only builds the new state (ControlState, streams/runtime/control.py). Engines
switch to it on the event loop, under the processor's lock, so between two batches: no
event is scored half by the old model and half by the new, and none is read twice.
Snoozes need no swap: engines read the latest snooze map at every window they close.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.core.config import KafkaConfig, VigilConfig
from streams.runtime.control import ControlError, ControlState, Effective, parse_record
from streams.runtime.kafka_client import kafka_python_options

log = logging.getLogger(__name__)

POLL_MS = 250  # a record reaches the state within this and one fetch round-trip
SWAP_EVERY_S = 0.5  # how often the event loop looks for a new state to swap in


@dataclass
class ControlMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.records = Counter(
            "vigil_control_records",
            "Control and snooze records read, by kind and outcome (applied or refused)",
            ["kind", "outcome"],
            registry=r,
        )
        self.delay = Gauge(
            "vigil_control_delay_seconds",
            "From a control record's publication to its use by this worker's engines (the last)",
            ["kind"],
            registry=r,
        )
        self.snoozes = Gauge(
            "vigil_snoozes_active", "Snoozes running now, as this worker knows them", registry=r
        )
        for kind in ("model", "config", "snooze"):  # every series scraped from the start
            for outcome in ("applied", "refused"):
                self.records.labels(kind, outcome)
        for kind in ("model", "config"):
            self.delay.labels(kind)
        self.generation = Gauge(
            "vigil_control_generation",
            "Model and config records applied since start; equal on workers that agree",
            registry=r,
        )


@dataclass
class ControlReader:
    """Reads both topics into `state` from a thread; `caught_up` once it has read every
    record that was there when it started."""

    kafka: KafkaConfig
    state: ControlState
    metrics: ControlMetrics
    caught_up: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    pending: dict[str, float] = field(default_factory=dict)  # kind -> publication time
    # Next offset per (topic, partition) already applied: after a reconnect the reader
    # goes on from there instead of applying every record a second time.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name="vigil-control", daemon=True)
        t.start()
        return t

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._read()
            except Exception:  # the broker away, a topic deleted: try again, keep the state
                log.exception("control reader failed; reconnecting in 2 s")
                self.stop.wait(2.0)

    def _read(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        topics = (self.kafka.control_topic, self.kafka.snoozes_topic)
        consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, client_id="vigil-control",
            **kafka_python_options(self.kafka),
        )  # fmt: skip
        try:
            tps = [
                TopicPartition(t, p)
                for t in topics
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(tps)
            for tp in tps:
                seen = self.positions.get((tp.topic, tp.partition))
                if seen is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, seen)
            ends = consumer.end_offsets(tps) if tps else {}
            while not self.stop.is_set():
                for tp, recs in consumer.poll(timeout_ms=POLL_MS).items():
                    for rec in recs:
                        if tp.topic == self.kafka.control_topic:
                            self._control(rec.value)
                        else:
                            self._snooze(rec.key, rec.value)
                        self.positions[(tp.topic, tp.partition)] = rec.offset + 1
                if not self.caught_up.is_set() and all(
                    consumer.position(tp) >= end for tp, end in ends.items()
                ):
                    log.info("control: read %s, %d snoozes", topics, len(self.state.snoozes))
                    self.caught_up.set()
                if not tps:  # not created yet (run_worker creates them first): look again
                    self.caught_up.set()
                    self.stop.wait(2.0)
                    return
        finally:
            consumer.close()

    def _control(self, value: bytes | None) -> None:
        kind = "unknown"
        try:
            if value is None:
                return  # a tombstone: keep what is running
            record = parse_record(value)
            kind = record["kind"]
            new = self.state.apply(record)
        except ControlError as exc:
            self.metrics.records.labels(kind, "refused").inc()
            log.error("control record refused, still running the previous one: %s", exc)
            return
        self.metrics.records.labels(kind, "applied").inc()
        if self.caught_up.is_set():
            self.pending[kind] = float(record.get("ts") or time.time())
        log.warning(
            "control: %s record read: model %s, config %s (generation %d)",
            kind, new.model_version or "unchanged", new.config_version, new.generation,
        )  # fmt: skip

    def _snooze(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self.state.snooze(key, value)
        except ControlError as exc:
            self.metrics.records.labels("snooze", "refused").inc()
            log.error("snooze record refused: %s", exc)
            return
        self.metrics.records.labels("snooze", "applied").inc()
        now = time.time()
        self.metrics.snoozes.set(sum(1 for u in self.state.snoozes.values() if u > now))


@dataclass
class Control:
    """What the worker wires in: the state engines are built from, the reader, and the
    swap that the event loop runs between batches."""

    state: ControlState
    reader: ControlReader
    metrics: ControlMetrics
    engine_metrics: Any
    applied: int = 0  # the generation the engines run

    def engine_kwargs(self, classifier: bool) -> dict[str, Any]:
        """Config and detectors for a new engine: the latest state, not the start-up one."""
        from streams.engine.engine import build_detectors

        cur = self.state.current
        on = classifier and cur.config.detectors.classifier.enabled
        dets = build_detectors(cur.config, classifier=on and cur.classifier is None)
        if on and cur.classifier is not None:
            dets["classifier"] = cur.classifier
        return {"config": cur.config, "detectors": dets, "snoozes": self.state.snoozed}

    def swap(self, engines: list[Any]) -> Effective | None:
        """Switch every engine to the latest state; call between batches only."""
        cur = self.state.current
        if cur.generation == self.applied:
            return None
        for engine in engines:
            # A model that loaded in the reader is not refused here, and a config with
            # other engine settings was refused when the record was read; should an engine
            # refuse anyway, it keeps running as it was rather than stopping the worker.
            try:
                engine.swap(cur.config, cur.classifier)
            except ValueError as exc:
                self.metrics.records.labels("engine", "refused").inc()
                log.error("an engine kept its model and config: %s", exc)
        self.applied = cur.generation
        m = self.engine_metrics
        if cur.classifier is not None:  # moves the dashboards' version annotations
            m.model_info.info({"version": cur.model_version, "path": cur.config.model_path})
        m.config_info.info({"config_version": cur.config_version})
        self.metrics.generation.set(cur.generation)
        now = time.time()
        for kind, ts in self.reader.pending.items():
            self.metrics.delay.labels(kind).set(max(0.0, now - ts))
        self.reader.pending.clear()
        log.warning(
            "switched %d engines to model %s, config %s",
            len(engines), cur.model_version or "as started", cur.config_version,
        )  # fmt: skip
        return cur

    def wait_caught_up(self, timeout_s: float) -> bool:
        ok = self.reader.caught_up.wait(timeout_s)
        if not ok:
            log.warning(
                "control and snooze topics not read within %.0f s; starting with what is known",
                timeout_s,
            )
        return ok


def start_control(
    config: VigilConfig, metrics: Any, classifier: bool, check_model: Any = None
) -> Control:
    state = ControlState(config, classifier_enabled=classifier, check=check_model)
    cm = ControlMetrics(metrics.registry)
    reader = ControlReader(config.kafka, state, cm)
    reader.start()
    return Control(state, reader, cm, metrics)


def install(app: Any, processor: Any, control: Control) -> None:
    """Swap on a timer, under the processor's lock: between batches, and also on a worker
    whose partitions are quiet, so its version metrics move with the others'."""

    @app.timer(SWAP_EVERY_S)
    async def _control_swap() -> None:
        if control.state.current.generation == control.applied:
            return
        async with processor.lock:
            control.swap([part.engine for part in processor.parts.values()])
