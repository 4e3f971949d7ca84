"""Deviation from the account's own history, per metric.

Each account's per-window metrics form time series scored online by SeriesDetector (the
same detector `vigil eval nab` measures). Only rises count as suspicious: an account going
quiet is not misuse. A light per-account average is kept beside it to put a baseline figure
in the reasons a person reads.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from detectors.base import Explanation, FeatureBatch, fill_nan
from detectors.series import SeriesDetector
from streams.alerts import Reason

METRICS = ("requests", "tokens", "errors", "new_ips", "content_filtered")
SERIES_DEFAULTS = {"abs_floor": 0.5}
# A rise must also be clear of count noise: above avg + 3 sqrt(avg) + this floor. Without
# it, 6 requests after a usual 1.3 reads as a 4x surge.
NOISE_FLOOR = np.array([5.0, 5000.0, 5.0, 3.0, 5.0])
LABELS = {
    "requests": "requests/5 min",
    "tokens": "tokens/5 min",
    "errors": "failed requests/5 min",
    "new_ips": "new IPs/5 min",
    "content_filtered": "content-filtered requests/5 min",
}


def metric_values(batch: FeatureBatch) -> np.ndarray:
    req = batch.col("requests")
    fails = (batch.col("error_rate") + batch.col("auth_fail_rate")) * req
    return np.stack(
        [
            req,
            batch.col("tokens"),
            fails,
            batch.col("new_ips"),
            batch.col("content_filter_rate") * req,
        ],
        axis=1,
    )


class BaselineDetector:
    name = "baseline"
    version = "1"

    def __init__(self, series_params: dict[str, Any] | None = None, avg_alpha: float = 0.1) -> None:
        # Metrics go in as log1p counts; a floor of 0.5 on their spread keeps a quiet
        # account's first error or first new IP from reading as an extreme spike.
        self.series_params = dict(series_params if series_params is not None else SERIES_DEFAULTS)
        self.avg_alpha = avg_alpha
        self.series = SeriesDetector(n_metrics=len(METRICS), **self.series_params)
        self._avg = np.zeros((0, len(METRICS)))

    def params(self) -> dict[str, Any]:
        return {"series_params": self.series_params, "avg_alpha": self.avg_alpha}

    def _ensure(self, slots: np.ndarray) -> None:
        need = int(slots.max()) + 1 if len(slots) else 0
        if need > self._avg.shape[0]:
            grow = max(need, 2 * self._avg.shape[0], 64) - self._avg.shape[0]
            self._avg = np.vstack([self._avg, np.full((grow, len(METRICS)), np.nan)])

    def _combine(self, batch: FeatureBatch, raw: np.ndarray) -> np.ndarray:
        values = metric_values(batch)
        self._ensure(batch.slots)
        avg = self._avg[batch.slots]
        base = fill_nan(avg, nan=0.0)
        rising = values > base + 3 * np.sqrt(base) + NOISE_FLOOR
        return (np.where(rising, raw, 0.0)).max(axis=1) if len(batch) else np.zeros(0)

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        values = metric_values(batch)
        raw = self.series.score_learn(batch.slots, batch.window_end, np.log1p(values))
        scores = self._combine(batch, raw)
        # Reasons compare against the baseline as it was before this window was learned.
        self._before = (id(batch), self._avg[batch.slots].copy())
        self._learn_avg(batch.slots, values)
        return scores

    def score(self, batch: FeatureBatch) -> np.ndarray:
        # Pure scoring on a copy: the series detector scores and learns in one step.
        return copy.deepcopy(self).score_learn(batch)

    def learn(self, batch: FeatureBatch) -> None:
        self.score_learn(batch)

    def _learn_avg(self, slots: np.ndarray, values: np.ndarray) -> None:
        self._ensure(slots)
        avg = self._avg[slots]
        self._avg[slots] = np.where(np.isnan(avg), values, avg + self.avg_alpha * (values - avg))

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        values = metric_values(batch)[i]
        self._ensure(batch.slots)
        before = getattr(self, "_before", None)
        avg = before[1][i] if before and before[0] == id(batch) else self._avg[batch.slots[i]]
        reasons = []
        for j, m in enumerate(METRICS):
            base = float(avg[j]) if not np.isnan(avg[j]) else 0.0
            v = float(values[j])
            if v > 3 * max(base, 1.0) and v >= 5:
                text = f"{LABELS[m]} {v:,.0f} vs baseline {base:,.1f} ({v / max(base, 0.1):,.0f}x)"
                reasons.append(Reason(m, v, base, text))
        return Explanation(None, reasons)

    def reserve_slots(self, n_slots: int) -> None:
        """Grows the per-slot arrays to exactly n_slots, in step with the account table, so
        that the engine's byte budget holds for them too."""
        self.series.ensure_capacity(n_slots, exact=True)
        grow = n_slots - self._avg.shape[0]
        if grow > 0:
            self._avg = np.vstack([self._avg, np.full((grow, len(METRICS)), np.nan)])

    def reset_slots(self, slots: np.ndarray) -> None:
        self.series.reset_slots(slots)
        self._ensure(slots)
        self._avg[slots] = np.nan

    def state_dict(self) -> dict[str, Any]:
        return {"series": self.series.state_dict(), "avg": self._avg.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.series.load_state_dict(state["series"])
        self._avg = state["avg"].copy()
