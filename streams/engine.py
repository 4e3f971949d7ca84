"""The transport-free core: raw events in, alerts and dead letters out.

Both runners drive this class: `vigil replay` from files, `vigil worker` from Kafka.
Events are buffered until the watermark (newest event time minus the allowed lateness)
passes the end of their window; the window is then closed for every account at once,
scored by every detector, and fused into alerts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.base import Detector, fill_nan
from detectors.baseline import BaselineDetector
from detectors.campaign import CampaignDetector
from detectors.population import PopulationDetector
from detectors.rules import RulesDetector
from detectors.takeover import TakeoverDetector
from streams.alerts import Alert, rfc3339
from streams.campaign import CampaignState
from streams.codes import CODES_VERSION
from streams.config import VigilConfig
from streams.events import DeadLetter, EventBatch, decode_lines, empty_batch
from streams.features import FEATURES, window_features
from streams.fusion import fuse
from streams.metrics import Metrics
from streams.seen import IdSet, add_new
from streams.snapshots import WindowSnapshots
from streams.state import AccountTable

log = logging.getLogger("vigil.engine")
SnoozeSource = Any  # callable(now_epoch) -> {(account_id, detector): until_epoch}


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: list[WindowSnapshots] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.alerts += other.alerts
        self.dead_letters += other.dead_letters
        self.snapshots += other.snapshots


def build_detectors(cfg: VigilConfig, metrics: Metrics | None = None) -> dict[str, Detector]:
    dets: dict[str, Detector] = {
        "rules": RulesDetector(cfg.rules),
        "baseline": BaselineDetector(),
        "population": PopulationDetector(),
        "campaign": CampaignDetector(free_daily_tokens=cfg.platform.free_daily_tokens),
        "takeover": TakeoverDetector(),
    }
    try:
        from detectors.classifier import ClassifierDetector

        clf = ClassifierDetector(cfg.model_path, calibrated=cfg.fusion.classifier_calibrated)
        dets["classifier"] = clf
        if metrics:
            metrics.model_loaded.set(1)
            metrics.model_info.info({"version": clf.version, "path": cfg.model_path or "default"})
    except Exception as exc:  # the engine keeps running on the other detectors
        log.error("classifier model failed to load: %s", exc)
        if metrics:
            metrics.model_loaded.set(0)
    return dets


class Engine:
    def __init__(
        self,
        config: VigilConfig | None = None,
        metrics: Metrics | None = None,
        detectors: dict[str, Detector] | None = None,
        snoozes: SnoozeSource | None = None,
        emit_snapshots: bool = False,
        clock=time.time,
        on_features=None,
    ) -> None:
        self.cfg = config or VigilConfig()
        self.metrics = metrics or Metrics()
        self.detectors = (
            detectors if detectors is not None else build_detectors(self.cfg, self.metrics)
        )
        self.snoozes = snoozes
        self.emit_snapshots = emit_snapshots
        self.clock = clock
        self.on_features = on_features  # called with each window's FeatureBatch (training)
        self.table = AccountTable()
        self.campaign = CampaignState(
            self.cfg.engine.campaign_horizon_s,
            self.cfg.engine.campaign_max_keys,
            self.cfg.platform.free_daily_tokens,
        )
        self.pending: list[EventBatch] = []
        self.max_ts = -np.inf
        self.closed_until = -np.inf  # every window ending at or before this is closed
        self._seen_ids = (IdSet(), IdSet())  # event id codes: this generation, the last
        self._seen_gen_end = -np.inf
        self._windows_closed = 0
        # Raw lines and times of events buffered since the last `take_journal()`, kept only
        # when a runner checkpoints the open windows incrementally (the Kafka worker).
        self.journal_pending = False
        self._journal: list[tuple[np.ndarray, np.ndarray]] = []
        clf = self.detectors.get("classifier")
        self.model_version = getattr(clf, "version", "none")
        self.metrics.detector_info.info(
            {k: str(getattr(d, "version", "")) for k, d in self.detectors.items()}
        )

    # ---- input -------------------------------------------------------------------------
    def process_lines(self, lines: list[bytes]) -> Output:
        t0 = time.perf_counter()
        e = self.cfg.engine
        batch, dead = decode_lines(lines, self.clock(), e.max_future_s, e.max_line_bytes)
        self.metrics.events_read.inc(len(lines))
        out = Output(dead_letters=dead)
        out.extend(self.process_events(batch))
        for d in out.dead_letters:
            self.metrics.events_rejected.labels(d.reason).inc()
        self.metrics.processing_latency.observe(time.perf_counter() - t0)
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
            if self.journal_pending:
                self._journal.append((batch.raw, batch.ts))
            self.max_ts = max(self.max_ts, float(batch.ts.max()))
            self.metrics.event_time_lag.observe(max(self.clock() - self.max_ts, 0.0))
        watermark = self.max_ts - self.cfg.engine.allowed_lateness_s
        w = self.cfg.engine.window_s
        out.extend(self._close_until(np.floor(watermark / w) * w))
        return out

    def flush(self) -> Output:
        """Close every open window: the end of a finite input."""
        w = self.cfg.engine.window_s
        return self._close_until(np.floor(self.max_ts / w) * w + w) if self.pending else Output()

    def _dedup(self, batch: EventBatch) -> EventBatch:
        cur, prev = self._seen_ids
        keep = add_new(cur, prev, batch.event_id)
        dups = len(batch) - int(np.count_nonzero(keep))
        if dups:
            self.metrics.events_duplicate.inc(dups)
            batch = batch.take(np.flatnonzero(keep))
        # Two generations of ids: every id is remembered for at least one horizon.
        if self.max_ts > self._seen_gen_end:
            if self._seen_gen_end > -np.inf:
                self._seen_ids = (IdSet(), cur)
            self._seen_gen_end = self.max_ts + self.cfg.engine.dedup_horizon_s
        return batch

    # ---- windows -----------------------------------------------------------------------
    def _close_until(self, boundary: float) -> Output:
        out = Output()
        if boundary <= self.closed_until or not self.pending:
            self.closed_until = max(self.closed_until, boundary)
            return out
        events = EventBatch.concat(self.pending)
        ready = events.ts < boundary
        rest = np.flatnonzero(~ready)
        self.pending = [events.take(rest)] if len(rest) else []
        self.closed_until = boundary
        if len(rest) == len(events):
            return out
        w = self.cfg.engine.window_s
        ridx = np.flatnonzero(ready)
        widx = np.floor(events.ts[ridx] / w).astype(np.int64)
        order = np.argsort(widx, kind="stable")
        events, widx = events.take(ridx[order]), widx[order]  # one copy, sorted by window
        cuts = np.r_[0, np.flatnonzero(np.diff(widx)) + 1, len(widx)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            sub = events.slice(a, b)
            start = float(widx[a] * w)
            try:
                out.extend(self._close_window(sub, start, start + w))
            except Exception as exc:  # one bad window must not stop the stream or lose events
                log.exception("window %s failed", rfc3339(start))
                detail = f"{type(exc).__name__}: {exc}"
                out.dead_letters += [DeadLetter(r, "processing_error", detail) for r in sub.raw]
        return out

    def _close_window(self, ev: EventBatch, start: float, end: float) -> Output:
        batch, groups = window_features(ev, start, end, self.table, self.campaign)
        if self.on_features is not None:
            self.on_features(batch)
        scores: dict[str, np.ndarray] = {}
        for name, det in self.detectors.items():
            s = np.clip(fill_nan(det.score_learn(batch)), 0.0, 1.0)
            scores[name] = s
            self.metrics.detector_score.observe_many(name, s)
        clf = self.detectors.get("classifier")
        if clf is not None:
            self.metrics.classifier_latency.observe(getattr(clf, "last_inference_s", 0.0))
            self.metrics.classifier_batch.observe(len(batch))
        snoozed = self.snoozes(end) if self.snoozes else None
        result = fuse(
            batch, scores, self.detectors, self.table, self.cfg.fusion, self.model_version, snoozed
        )
        for cause, k in result.suppressed.items():
            if k:
                self.metrics.alerts_suppressed.labels(cause).inc(k)
        for a in result.alerts:
            top = a.detectors[0].name if a.detectors else "none"
            self.metrics.alerts.labels(a.severity, a.category, top).inc()
        self.metrics.events_processed.inc(len(ev))
        self.metrics.windows_closed.inc(len(batch))
        self.metrics.watermark.set(end)
        self._windows_closed += 1
        if self._windows_closed % 12 == 0:
            self._evict(end)
        self.metrics.active_accounts.set(len(self.table))
        snaps = [WindowSnapshots(batch, groups, ev)] if self.emit_snapshots else []
        return Output(alerts=result.alerts, snapshots=snaps)

    def _evict(self, now: float) -> None:
        e = self.cfg.engine
        freed = self.table.evict(now, e.account_ttl_s, e.max_accounts)
        if len(freed):
            base = self.detectors.get("baseline")
            if isinstance(base, BaselineDetector):
                base.reset_slots(freed)
            self.metrics.accounts_evicted.inc(len(freed))

    # ---- state -------------------------------------------------------------------------
    def take_journal(self) -> tuple[list[bytes], float]:
        """Raw lines of the events buffered since the last call that are still open.

        With `state_dict(pending=False)` and `restore_pending`, a checkpoint stores each
        buffered event once instead of every open event at every checkpoint: a live stream
        keeps minutes of events in open windows, and re-encoding them every few seconds
        would cost more than processing them.
        """
        journal, self._journal = self._journal, []
        out: list[bytes] = []
        newest = -np.inf
        for raw, ts in journal:
            # Events of windows closed since are in the state already.
            still_open = ts >= self.closed_until
            out += raw[still_open].tolist()
            if still_open.any():
                newest = max(newest, float(ts[still_open].max()))
        return out, newest

    def restore_pending(self, lines: list[bytes]) -> None:
        """Buffers again the open events among `lines` (journals since the checkpoint's
        oldest open event), after `load_state_dict(...)` of a state without them."""
        if not lines:
            return
        e = self.cfg.engine
        batch, _ = decode_lines(lines, np.inf, e.max_future_s, e.max_line_bytes)
        batch = batch.take(np.flatnonzero(batch.ts >= self.closed_until))
        self.pending = [EventBatch.concat([*self.pending, batch])] if len(batch) else self.pending

    def state_dict(self, pending: bool = True) -> dict[str, Any]:
        return {
            "features": FEATURES,
            "codes": CODES_VERSION,
            "table": self.table.state_dict(),
            "campaign": self.campaign.state_dict(),
            "detectors": {k: d.state_dict() for k, d in self.detectors.items()},
            "pending": (
                EventBatch.concat(self.pending) if self.pending and pending else empty_batch()
            ),
            "max_ts": self.max_ts,
            "closed_until": self.closed_until,
            "seen_ids": tuple(ids.ids() for ids in self._seen_ids),
            "seen_gen_end": self._seen_gen_end,
            "windows_closed": self._windows_closed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["features"]) != FEATURES:
            raise ValueError("checkpoint was written with a different feature set")
        if state.get("codes") != CODES_VERSION:
            raise ValueError("checkpoint was written with a different string coding")
        self.table.load_state_dict(state["table"])
        self.campaign.load_state_dict(state["campaign"])
        for k, d in self.detectors.items():
            if k in state["detectors"]:
                d.load_state_dict(state["detectors"][k])
        pending = state["pending"]
        self.pending = [pending] if len(pending) else []
        if self.journal_pending and len(pending):
            self._journal.append((pending.raw, pending.ts))  # a state that carried them
        self.max_ts = state["max_ts"]
        self.closed_until = state["closed_until"]
        cur, prev = state["seen_ids"]
        self._seen_ids = (IdSet(cur), IdSet(prev))
        self._seen_gen_end = state["seen_gen_end"]
        self._windows_closed = state["windows_closed"]
