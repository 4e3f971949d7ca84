"""The transport-free core: raw events in, alerts and dead letters out.

Both runners drive this class: `vigil replay` from files, `vigil worker` from Kafka.
Events are buffered until the watermark (newest event time minus the allowed lateness)
passes the end of their window; the window is then closed for every account at once,
scored by every detector, and fused into alerts.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from detectors.base import Detector
from detectors.rules import RulesDetector
from streams.contract.codes import use_key
from streams.contract.events import DeadLetter, EventBatch, decode_lines
from streams.core.alerts import rfc3339
from streams.core.batch import FeatureBatch, fill_nan
from streams.core.config import VigilConfig
from streams.core.config_version import config_version
from streams.engine.alert_latency import AlertLatency, window_ends
from streams.engine.budget import (
    StateBudget,
    account_parts,
    array_bytes,
    batch_bytes,
    report,
)
from streams.engine.build import ModelError, Output, build_detectors
from streams.engine.dedup import Dedup
from streams.engine.exchange import TwoPhase
from streams.engine.memory import EngineMemory
from streams.engine.metric_labels import (
    NO_DETECTOR,
    count_agreement,
    count_versions,
    zero_init_scores,
)
from streams.engine.metrics import Metrics
from streams.engine.snapshots import WindowSnapshots
from streams.engine.state_io import EngineState
from streams.features.campaign import SIGNALS, CampaignState
from streams.features.groups import Groups
from streams.features.state import AccountTable
from streams.features.window import window_features
from streams.fusion.cooldowns import Cooldowns
from streams.fusion.fuse import fuse

__all__ = ["Engine", "ModelError", "Output", "build_detectors"]  # where callers import them

log = logging.getLogger("vigil.engine")
SnoozeSource = Any  # callable(now_epoch) -> {(account_id, detector): until_epoch}


class Engine(TwoPhase, EngineState, EngineMemory, Dedup):
    def __init__(
        self,
        config: VigilConfig | None = None,
        metrics: Metrics | None = None,
        detectors: dict[str, Detector] | None = None,
        snoozes: SnoozeSource | None = None,
        emit_snapshots: bool = False,
        clock=time.time,
        on_features=None,
        shadow=None,
        on_scores=None,
        campaign_exchange: bool = False,
    ) -> None:
        self.cfg = config or VigilConfig()
        # Close windows in two phases, the campaign figures coming from outside between
        # them (streams/engine/exchange.py): set by a runner whose engines share keys.
        self.campaign_exchange = campaign_exchange
        # Codes are keyed process-wide: every engine of a process shares the key. Its
        # fingerprint goes into this engine's checkpoints.
        self.key_fingerprint = use_key(self.cfg.engine.hash_key)
        self.metrics = metrics or Metrics()
        self.detectors = detectors if detectors is not None else build_detectors(self.cfg)
        self.snoozes = snoozes
        self.emit_snapshots = emit_snapshots
        self.clock = clock
        self.on_features = on_features  # called with each window's FeatureBatch (training)
        self.shadow = shadow  # a streams.engine.shadow.Shadow: a challenger beside the model
        self.on_scores = on_scores  # called with (batch, scores) before fusion (calibration)
        # Called with (engine, window start) before each window is scored: replay switches
        # model and config there at the event time its control records name.
        self.before_window: Any = None
        self.table = AccountTable()
        self.cooldowns = Cooldowns()  # fusion's state
        self.budget = StateBudget(self.cfg.engine.state_budget_bytes)
        self.metrics.state_budget.set(self.budget.budget)
        e = self.cfg.engine
        self.campaign = CampaignState(
            e.campaign_horizon_s,
            self.budget.campaign_max_keys(e.campaign_max_keys, len(SIGNALS)),
            self.cfg.platform.free_daily_tokens,
        )
        self.pending: list[EventBatch] = []
        self.max_ts = -np.inf
        self.newest_read = -np.inf  # newest event time of the last process_lines call
        self.median_read = -np.inf  # ... and its median, which one odd clock cannot move
        self.source_watermark: float | None = None  # see set_source_watermark
        self.closed_until = -np.inf  # every window ending at or before this is closed
        self._init_dedup()
        self._windows_closed = 0
        # Memory in bytes (streams/engine/budget.py): the open windows' bytes are kept up to date
        # as events are buffered; the campaign indexes' members are counted now and then.
        self._open_bytes = 0
        # Events and bytes buffered since start: their mean sizes the closed windows that
        # wait to be scored (exchange.py, unscored_bytes) without a walk over their lines.
        self._events_in = 0
        self._bytes_in = 0
        self._campaign_members = 0
        self._detector_bytes = 0  # the detectors' arrays: counted as they grow, and hourly
        self._reserved = 0  # accounts the detectors' arrays are sized for
        self._reserve_slots()
        self._detector_bytes = array_bytes(self.detectors)
        self.budget_evicted = 0  # accounts evicted to keep within the budget
        self.windows_forced = 0  # windows closed early to bound the open windows' bytes
        self.windows_split = 0  # windows scored in parts, their accounts past the budget
        # Raw lines and times of events buffered since the last `take_journal()`, kept only
        # when a runner checkpoints the open windows incrementally (the Kafka worker).
        self.journal_pending = False
        self._journal: list[tuple[np.ndarray, np.ndarray]] = []
        self._versions()
        zero_init_scores(self.metrics, self.detectors)
        self.alert_latency = AlertLatency(self.metrics.alert_latency)
        self._init_exchange()

    def _versions(self) -> None:
        """Model and config versions: stamped on every alert, exported as info metrics."""
        clf = self.detectors.get("classifier")
        self.model_version = getattr(clf, "version", "none")
        self.config_version = config_version(self.cfg)
        self.metrics.model_loaded.set(1 if clf is not None else 0)
        if clf is not None:
            self.metrics.model_info.info(
                {"version": self.model_version, "path": self.cfg.model_path or "default"}
            )
        self.metrics.detector_info.info(
            {k: str(getattr(d, "version", "")) for k, d in self.detectors.items()}
        )
        self.metrics.config_info.info({"config_version": self.config_version})
        self.metrics.alerts_by_version.labels(self.model_version, self.config_version)

    def swap(self, config: VigilConfig, classifier: Detector | None = None) -> None:
        """Switch to another fusion and rules config and, if given, another classifier,
        between two batches. Every piece of state stays: open windows, accounts, detector
        state, cooldowns. Only settings that no state depends on may change; anything
        else raises ValueError and changes nothing."""
        for part in ("engine", "platform"):
            if getattr(config, part) != getattr(self.cfg, part):
                raise ValueError(f"{part} settings cannot change in a running engine")
        if dataclasses.replace(config.detectors, classifier=self.cfg.detectors.classifier) != (
            self.cfg.detectors
        ):
            raise ValueError("detector parameters cannot change in a running engine")
        if classifier is not None and "classifier" not in self.detectors:
            raise ValueError("this engine runs without a classifier")
        rules = RulesDetector(config.rules) if config.rules != self.cfg.rules else None
        self.cfg = config
        if rules is not None:  # stateless: a new one replaces it in place, same order
            self.detectors["rules"] = rules
        if classifier is not None:
            classifier.reserve(self.table.capacity)
            self.detectors["classifier"] = classifier
        self._versions()

    # ---- input -------------------------------------------------------------------------
    def process_lines(self, lines: list[bytes], columns: tuple | None = None) -> Output:
        """`columns`: the lines already through the compiled decoder (decode_lines)."""
        t0 = time.perf_counter()
        arrived, before = time.time(), self.max_ts
        e = self.cfg.engine
        batch, dead = decode_lines(
            lines, self.clock(), e.max_future_s, e.max_line_bytes, columns=columns
        )
        # For a runner's event-time marks: the newest event of these lines, duplicates and
        # late ones included, as read.
        self.newest_read = float(batch.ts.max()) if len(batch) else -np.inf
        self.median_read = float(np.median(batch.ts)) if len(batch) else -np.inf
        self.metrics.events_read.inc(len(lines))
        out = Output(dead_letters=dead)
        out.extend(self.process_events(batch))
        self.alert_latency.batch_arrived(before, self.max_ts, arrived)
        self._counted(out)
        self.metrics.processing_latency.observe(time.perf_counter() - t0)
        return out

    def _counted(self, out: Output) -> Output:
        if out.alerts:
            self.alert_latency.alerts_emitted(window_ends(out.alerts), self.closed_until)
        for d in out.dead_letters:
            self.metrics.events_rejected.labels(d.reason).inc()
        return out

    def process_events(self, batch: EventBatch) -> Output:
        out = Output()
        if len(batch) == 0:
            return out
        batch = self._dedup(batch)
        late = batch.ts < self.closed_until
        if late.any():
            for i in np.flatnonzero(late).tolist():
                out.dead_letters.append(
                    DeadLetter(
                        batch.raw[i], "too_late", f"ts {rfc3339(batch.ts[i])} is in a closed window"
                    )
                )
            batch = batch.take(np.flatnonzero(~late))
        if len(batch):
            self.pending.append(batch)
            nbytes = batch_bytes(batch)
            self._open_bytes += nbytes
            self._events_in += len(batch)
            self._bytes_in += nbytes
            if self.journal_pending:
                self._journal.append((batch.raw, batch.ts))
            self.max_ts = max(self.max_ts, float(batch.ts.max()))
            self.metrics.event_time_lag.observe(max(self.clock() - self.max_ts, 0.0))
        out.extend(self._advance())
        return out

    def set_source_watermark(self, ts: float | None) -> Output:
        """Event time that every source of this engine's events has passed, set by a runner
        with several sources (the Kafka worker, streams/kafka/watermarks.py); windows then
        close on it instead of on this engine's newest event. None: the newest event, as
        for one source (replay)."""
        self.source_watermark = ts
        return self._counted(self._advance())

    def _advance(self) -> Output:
        now = self.max_ts if self.source_watermark is None else self.source_watermark
        w = self.cfg.engine.window_s
        out = self._reemitted()
        out.extend(self._close_until(np.floor((now - self.cfg.engine.allowed_lateness_s) / w) * w))
        out.extend(self._bound_open_windows())
        return out

    def flush(self) -> Output:
        """Close every open window: the end of a finite input."""
        w = self.cfg.engine.window_s
        out = self._reemitted()
        if self.pending:
            out.extend(self._close_until(np.floor(self.max_ts / w) * w + w))
        return out

    # ---- windows -----------------------------------------------------------------------
    def _close_until(self, boundary: float) -> Output:
        out = Output()
        if boundary <= self.closed_until or not self.pending:
            self.closed_until = max(self.closed_until, boundary)
            return out
        # Only the batches a window closes in are copied: while sources are drained at
        # different speeds, many windows stay open, and copying all of them at each close
        # took a tenth of a catching-up worker's time. The order of events is that of
        # concatenating every pending batch, as before.
        closed: list[EventBatch] = []
        rest: list[EventBatch] = []
        for b in self.pending:
            if b.ts.min() >= boundary:
                rest.append(b)
            elif b.ts.max() < boundary:
                closed.append(b)
            else:
                early = b.ts < boundary
                closed.append(b.take(np.flatnonzero(early)))
                rest.append(b.take(np.flatnonzero(~early)))
        self.pending = rest
        self.closed_until = boundary
        if not closed:
            return out
        events = EventBatch.concat(closed)
        self._open_bytes = self._open_bytes - batch_bytes(events) if rest else 0
        w = self.cfg.engine.window_s
        widx = np.floor(events.ts / w).astype(np.int64)
        if len(widx) > 1 and (widx[1:] < widx[:-1]).any():  # most closes hold one window
            order = np.argsort(widx, kind="stable")
            events, widx = events.take(order), widx[order]  # one copy, sorted by window
        cuts = np.r_[0, np.flatnonzero(np.diff(widx)) + 1, len(widx)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            start = float(widx[a] * w)
            if self.campaign_exchange:  # begun in order, as far as held windows allow
                self._ready.append((events.slice(a, b), start, start + w))
                continue
            for sub in self._account_chunks(events.slice(a, b)):
                try:
                    out.extend(self._close_window(sub, start, start + w))
                except Exception as exc:  # one bad window must not stop the stream or lose events
                    log.exception("window %s failed", rfc3339(start))
                    detail = f"{type(exc).__name__}: {exc}"
                    out.dead_letters += [DeadLetter(r, "processing_error", detail) for r in sub.raw]
        if self.campaign_exchange:
            out.extend(self._begin_ready())
        return out

    def _account_chunks(self, ev: EventBatch) -> list[EventBatch]:
        """The window whole, or, when it holds more accounts than half the slots the budget
        allows, in parts by account, each scored (and then evictable) before the next."""
        limit = self.budget.max_capacity(self.usage().account_arrays / self.table.capacity) // 2
        parts = account_parts(ev.account_id, limit)
        if parts is None:
            return [ev]
        self.windows_split += 1
        self.metrics.budget_windows_split.inc()
        return [ev.take(rows) for rows in parts]

    def _close_window(self, ev: EventBatch, start: float, end: float) -> Output:
        if self.before_window is not None:
            self.before_window(self, start)
        moved = self.table.collisions
        self._make_room(ev)
        batch, groups = window_features(ev, start, end, self.table, self.campaign)
        self._count_collisions(moved)
        self._reserve_slots()
        return self._score_window(ev, batch, groups, end)

    def _count_collisions(self, before: int) -> None:
        if self.table.collisions > before:  # streams/features/identity.py kept two accounts apart
            self.metrics.account_collisions.inc(self.table.collisions - before)

    def _score_window(
        self,
        ev: EventBatch,
        batch: FeatureBatch,
        groups: Groups,
        end: float,
        hourly: bool | None = None,
    ) -> Output:
        """Detectors, fusion and alerts of a window whose features are complete. `hourly`:
        whether the hourly upkeep follows it; None, every 12th window scored."""
        if self.on_features is not None:
            self.on_features(batch)
        scores: dict[str, np.ndarray] = {}
        for name, det in self.detectors.items():
            t0 = time.perf_counter()
            s = np.clip(fill_nan(det.score_learn(batch)), 0.0, 1.0)
            if name == "classifier":  # the one detector with a latency of its own to watch
                self.metrics.classifier_latency.observe(time.perf_counter() - t0)
                self.metrics.classifier_batch.observe(len(batch))
            scores[name] = s
            self.metrics.detector_score.observe_many(name, s)
        if self.on_scores is not None:
            self.on_scores(batch, scores)
        snoozed = self.snoozes(end) if self.snoozes else None
        result = fuse(
            batch,
            scores,
            self.detectors,
            self.cooldowns,
            self.cfg.fusion,
            self.model_version,
            snoozed,
        )
        alerts = result.alerts
        if alerts:  # fusion knows the model's version; the config's is the engine's
            alerts = [dataclasses.replace(a, config_version=self.config_version) for a in alerts]
        for cause, k in result.suppressed.items():
            if k:
                self.metrics.alerts_suppressed.labels(cause).inc(k)
        for a in alerts:
            top = a.detectors[0].name if a.detectors else NO_DETECTOR
            self.metrics.alerts.labels(a.severity, a.category, top).inc()
        count_versions(self.metrics, alerts)
        self.metrics.count_processed(len(ev))
        self.metrics.windows_closed.inc(len(batch))
        self.metrics.watermark.set(end)
        self._windows_closed += 1
        if hourly is None:
            hourly = self._windows_closed % 12 == 0
        if hourly:
            self._hourly_upkeep(end)
        report(self.metrics, self.usage(), len(self.table))
        snaps = [WindowSnapshots(batch, groups, ev)] if self.emit_snapshots else []
        shadowed = (
            self.shadow.window(batch, scores, self.detectors, snoozed, result.alerts)
            if self.shadow is not None
            else []
        )
        if self.shadow is not None:
            count_agreement(self.metrics, alerts, shadowed)
        if shadowed:
            shadowed = [
                dataclasses.replace(a, config_version=self.config_version) for a in shadowed
            ]
        return Output(alerts=alerts, snapshots=snaps, shadow_alerts=shadowed)
