"""Deviation from the account's own history, per metric.

Each account's per-window metrics form time series scored online by RobustSeriesDetector
(the same detector `vigil eval nab` and `vigil eval nab-cv` measure). Only rises count as suspicious: an account going
quiet is not misuse. A light per-account average is kept beside it to put a baseline figure
in the reasons a person reads.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from detectors.base import Explanation
from detectors.series_robust import RobustSeriesDetector
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan
from streams.core.rows import AccountRows

USUAL = "baseline.usual"  # batch.context key: each row's usual values before its window
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
    version = "2"

    def __init__(
        self,
        series_params: dict[str, Any] | None = None,
        avg_alpha: float = 0.1,
        noise_floor: tuple[float, ...] = tuple(NOISE_FLOOR.tolist()),
    ) -> None:
        # Metrics go in as log1p counts; a floor of 0.5 on their spread keeps a quiet
        # account's first error or first new IP from reading as an extreme spike.
        self.series_params = dict(series_params if series_params is not None else SERIES_DEFAULTS)
        self.avg_alpha = avg_alpha
        if len(noise_floor) != len(METRICS):
            raise ValueError(f"noise_floor needs {len(METRICS)} values, one per {METRICS}")
        self.noise_floor = np.asarray(noise_floor, dtype=float)
        self.series = RobustSeriesDetector(n_metrics=len(METRICS), **self.series_params)
        self.rows = AccountRows()  # this detector's own row per account
        self._avg = np.zeros((0, len(METRICS)))

    def params(self) -> dict[str, Any]:
        return {
            "series_params": self.series_params,
            "avg_alpha": self.avg_alpha,
            "noise_floor": tuple(self.noise_floor.tolist()),
        }

    def _rows(self, batch: FeatureBatch) -> np.ndarray:
        rows = self.rows.rows(batch.accounts)
        have = self._avg.shape[0]
        if self.rows.size > have:
            grow = max(self.rows.size, 2 * have, 64) - have
            self._avg = np.vstack([self._avg, np.full((grow, len(METRICS)), np.nan)])
        return rows

    def _combine(self, values: np.ndarray, avg: np.ndarray, raw: np.ndarray) -> np.ndarray:
        base = fill_nan(avg, nan=0.0)
        rising = values > base + 3 * np.sqrt(base) + self.noise_floor
        return (np.where(rising, raw, 0.0)).max(axis=1) if len(values) else np.zeros(0)

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        rows = self._rows(batch)
        values = metric_values(batch)
        raw = self.series.score_learn(rows, batch.window_end, np.log1p(values))
        avg = self._avg[rows]
        scores = self._combine(values, avg, raw)
        # Reasons compare against the usual values as they were before this window.
        batch.context[USUAL] = avg
        self._avg[rows] = np.where(np.isnan(avg), values, avg + self.avg_alpha * (values - avg))
        return scores

    def score(self, batch: FeatureBatch) -> np.ndarray:
        # Pure scoring on a copy: the series detector scores and learns in one step.
        return copy.deepcopy(self).score_learn(batch)

    def learn(self, batch: FeatureBatch) -> None:
        self.score_learn(batch)

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        values = metric_values(batch)[i]
        usual = batch.context.get(USUAL)
        avg = usual[i] if usual is not None else self._usual_now(int(batch.accounts[i]))
        reasons = []
        for j, m in enumerate(METRICS):
            base = float(avg[j]) if not np.isnan(avg[j]) else 0.0
            v = float(values[j])
            if v > 3 * max(base, 1.0) and v >= 5:
                text = f"{LABELS[m]} {v:,.0f} vs baseline {base:,.1f} ({v / max(base, 0.1):,.0f}x)"
                reasons.append(Reason(m, v, base, text))
        return Explanation(None, reasons)

    def _usual_now(self, account: int) -> np.ndarray:
        """For a batch not scored yet: the account's usual values as they stand."""
        r = self.rows.index.get(account)
        return self._avg[r] if r is not None else np.full(len(METRICS), np.nan)

    def forget(self, accounts: np.ndarray) -> None:
        freed = self.rows.forget(accounts)
        if len(freed):
            self.series.reset_slots(freed)
            self._avg[freed] = np.nan

    def reserve(self, n_accounts: int) -> None:
        """Size the per-account arrays for exactly n_accounts, in step with the engine's
        account table, so that its byte budget holds for them too."""
        self.series.ensure_capacity(n_accounts, exact=True)
        grow = n_accounts - self._avg.shape[0]
        if grow > 0:
            self._avg = np.vstack([self._avg, np.full((grow, len(METRICS)), np.nan)])

    def state_dict(self) -> dict[str, Any]:
        return {
            "series": self.series.state_dict(),
            "avg": self._avg.copy(),
            "rows": self.rows.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.series.load_state_dict(state["series"])
        self._avg = state["avg"].copy()
        self.rows.load_state_dict(state["rows"])
