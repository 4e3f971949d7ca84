"""Online anomaly scoring for many series, robust to heavy tails and bursts.

`RobustSeriesDetector` keeps the interface and the per-slot state layout of
`SeriesDetector` (numbers per slot in numpy arrays, a batch of slots scored with a few
dozen array operations) and adds what the plain z-score against a running variance lacks
on bursty counts and heavy-tailed machine metrics:

1. Expectation, as before: a time-of-day profile of running means, falling back to the
   running level for a slice not seen yet.
2. Spread: the running mean and variance of the residuals, as before, with a longer
   memory (`alpha_stats`). Optionally every update (spread, level, time-of-day slice) is
   bounded to `clip` spreads, so one absurd reading can neither blow the spread up and
   hide the next incident nor bend the profile; a lasting change still gets there, a
   bounded step at a time. Off by default: leave-one-category-out tuning on NAB never
   chose it (docs/nab.md).
3. Per-series burstiness. Each series tracks, online, the level its own surprise exceeds
   in a share `tail_p` of steps (a stochastic quantile whose log moves by `tail_rate`).
   Where that level is above what Gaussian noise would give (`tail_ref`), the surprise is
   divided by the excess: a series whose usual bursts reach 8 spreads needs well over 8 to
   alarm, while a light-tailed series keeps its scale. It only divides, never multiplies,
   so a near-constant series is not made touchier.
4. Novelty and calibration, as before: a short average of the surprise minus part of its
   decayed recent peak, squashed into [0, 1], with a refractory damping after a firing.

The plain detector's value z-score (`value_weight`) is gone, and with it two rows of
state. Every point is scored against the state before it, then learnt. Gaps in `ts`
advance the decays by the number of usual steps that passed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors.series import _COOL, _DAY, _LAST, _N, _PARAMS, _STEP, SeriesDetector

# Rows of the per-slot, per-metric array.
_LVL, _RMEAN, _RVAR, _SMOOTH, _PEAK, _TAIL = range(6)
_N_ROWS = 6
# The tail level starts at the reference, which is finite unless the model is switched off.
_TAIL_START_MAX = 1e3
_EXTRA = ("clip", "tail_p", "tail_rate", "tail_ref")


class RobustSeriesDetector(SeriesDetector):
    name = "series_robust"
    version = "2.0"

    def __init__(
        self,
        n_metrics: int = 1,
        clip: float = math.inf,
        tail_p: float = 0.003,
        tail_rate: float = 0.01,
        tail_ref: float = 2.6,
        alpha_stats: float = 0.00075,
        **kwargs: Any,
    ) -> None:
        # Defaults other than the plain detector's come from `vigil eval nab-cv` (the
        # per-parameter median of what the leave-one-category-out folds chose; docs/nab.md).
        kwargs.pop("value_weight", None)  # a plain-series knob this detector does not use
        super().__init__(n_metrics=n_metrics, alpha_stats=alpha_stats, **kwargs)
        self.value_weight = 0.0
        self.clip = clip
        self.tail_p = tail_p
        self.tail_rate = tail_rate
        self.tail_ref = tail_ref
        self._metric = np.zeros((0, _N_ROWS, self.n_metrics))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rows = np.shape(state["metric"])[1:2]
        if rows != (_N_ROWS,):
            # A checkpoint of the plain SeriesDetector (7 rows) cannot be carried over.
            raise ValueError(
                f"series state has {rows[0] if rows else '?'} rows per metric, this detector "
                f"keeps {_N_ROWS}: it was saved by another series detector; start from a fresh state"
            )
        super().load_state_dict(state)

    def params(self) -> dict[str, Any]:
        keys = [k for k in _PARAMS if k != "value_weight"] + list(_EXTRA)
        return {k: getattr(self, k) for k in keys}

    # ----- scoring ---------------------------------------------------------------
    def _steps(self, sl: np.ndarray, ts: np.ndarray, first: np.ndarray):
        """Usual-step count since each slot's last point, and the updated usual step."""
        step = sl[:, _STEP]
        dt = np.where(first, 0.0, ts - sl[:, _LAST])
        step = np.where((step == 0) & (dt > 0), dt, step)
        k = np.where(step > 0, np.clip(dt / np.maximum(step, 1e-9), 1.0, 1e6), 1.0)
        step = np.where((dt > 0) & ~first, step + 0.01 * (np.minimum(dt, 4.0 * step) - step), step)
        return k, step

    def _surprise(
        self, mt: np.ndarray, res: np.ndarray, cnt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(z of the residual divided by the series' excess burstiness, for scoring; z as is,
        for learning the burstiness)."""
        spread = np.sqrt(mt[:, _RVAR])
        floor = self.rel_floor * np.abs(mt[:, _LVL]) + self.abs_floor + 1e-9
        z_raw = np.abs(res - mt[:, _RMEAN]) / (spread + floor)
        # Divide only: a level below the reference (light tails) leaves z as it is, and
        # tail_ref = inf switches the burstiness model off.
        z = z_raw
        if math.isfinite(self.tail_ref):
            z = z_raw * (self.tail_ref / np.maximum(mt[:, _TAIL], self.tail_ref))
        scoring = (cnt >= self.warmup)[:, None]
        return np.where(scoring, np.minimum(z, self.z_cap), 0.0), z_raw

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score each row against its slot's past, then learn it.

        slots: int (n,), unique within one call; ts: float (n,) epoch seconds;
        values: float (n, n_metrics). Returns scores in [0, 1], shape (n, n_metrics).
        """
        slots, ts, x = self._inputs(slots, ts, values)
        n = len(slots)
        if n == 0:
            return np.zeros((0, self.n_metrics))
        sl = self._slot[slots]
        mt = self._metric[slots]
        cnt, cool = sl[:, _N], sl[:, _COOL]
        first = cnt == 0
        k, step = self._steps(sl, ts, first)
        # Steady streams advance one usual step per call: scalar decays then, not n powers.
        kk = 1.0 if bool(np.all(k == 1.0)) else k[:, None]

        lvl = np.where(first[:, None], x, mt[:, _LVL])
        mt[:, _LVL] = lvl
        bins = ((ts % _DAY) * (self.season_bins / _DAY)).astype(np.int64) % self.season_bins
        sea = self._season[slots, :, bins].astype(np.float64)
        seen = ~np.isnan(sea)
        res = x - np.where(seen, sea, lvl)
        z, z_raw = self._surprise(mt, res, cnt)

        smooth, peak, novel = self._novelty(mt, z, kk)

        score, cool = self._fire(novel, cool, k)

        xb = self._learn(mt, x, res, cnt, kk, z_raw)
        mt[:, _SMOOTH] = smooth
        mt[:, _PEAK] = peak
        new_sea = np.where(seen, sea + self.alpha_season * (xb - sea), x)
        self._season[slots, :, bins] = new_sea.astype(np.float32)

        self._write_back(slots, sl, mt, cnt, ts, step, cool)
        return score

    def _novelty(self, mt: np.ndarray, z: np.ndarray, kk: Any):
        """The smoothed surprise, the decayed peak it must rise above, and by how much it
        does (novelty); each variant in detectors/nab scores through this too."""
        smooth = mt[:, _SMOOTH]
        smooth = smooth + (1.0 - (1.0 - self.alpha_smooth) ** kk) * (z - smooth)
        peak = mt[:, _PEAK] * self.peak_decay**kk
        novel = np.maximum(smooth - self.peak_weight * peak, 0.0)
        return smooth, np.maximum(peak, smooth), novel

    def _fire(self, novel: np.ndarray, cool: np.ndarray, k: Any):
        """Scores in [0, 1] from novelty, damped while a slot cools down after firing, and
        the slots' next cooldown."""
        zp = novel**self.sharpness
        score = zp / (zp + self.z_half**self.sharpness)
        score = np.where((cool > 0)[:, None], score * self.damping, score)
        fired = np.any(score >= self.fire, axis=1)
        return score, np.where(fired, float(self.refractory), np.maximum(cool - k, 0.0))

    def _learn(
        self,
        mt: np.ndarray,
        x: np.ndarray,
        res: np.ndarray,
        cnt: np.ndarray,
        kk: np.ndarray | float,
        z_raw: np.ndarray,
    ) -> np.ndarray:
        """Update level, residual centre and spread, and the tail quantile. Returns the value
        as learnt: x moved to within `clip` spreads of what was expected, so that one wild
        reading shifts neither the spread nor the level nor its time-of-day slice by more
        than a bounded step (a lasting change still gets there, a bounded step at a time)."""
        a = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
        var = mt[:, _RVAR]
        d = res - mt[:, _RMEAN]
        # Bounded once the spread is learnt: while warming up every deviation counts fully.
        warm = (cnt >= self.warmup)[:, None]
        if math.isinf(self.clip):
            bounded, xb = d, x
        else:
            spread = np.sqrt(var) + self.rel_floor * np.abs(mt[:, _LVL]) + self.abs_floor + 1e-9
            bound = self.clip * spread
            bounded = np.where(warm, np.clip(d, -bound, bound), d)
            xb = x - (d - bounded)
        mt[:, _RMEAN] = mt[:, _RMEAN] + a * bounded
        mt[:, _RVAR] = (1.0 - a) * (var + a * bounded * bounded)
        lvl = mt[:, _LVL]
        mt[:, _LVL] = lvl + (1.0 - (1.0 - self.alpha_level) ** kk) * (xb - lvl)
        # The tail level's log rises by tail_rate on an exceedance and falls by tail_rate * p
        # / (1 - p) otherwise, so it settles where the surprise exceeds it a share p of steps.
        # A fresh slot starts at the reference, where it has no effect yet.
        tail = np.where(cnt[:, None] == 0, min(self.tail_ref, _TAIL_START_MAX), mt[:, _TAIL])
        hit = z_raw > tail
        # Multiplicative steps (constant factors) keep the update free of exp and log.
        up = math.exp(self.tail_rate)
        down = math.exp(-self.tail_rate * self.tail_p / (1.0 - self.tail_p))
        mt[:, _TAIL] = np.where(warm, tail * np.where(hit, up, down), tail)
        return xb
