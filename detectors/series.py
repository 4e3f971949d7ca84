"""Online anomaly scoring for many time series at once.

Each slot is one series (one account's metrics, or one NAB file). State is a fixed set
of numbers per slot, held in three numpy arrays indexed by slot, so memory per series is
constant (184 bytes for one metric, 640 for four) and a batch of many series is scored with a
few dozen array operations instead of a Python loop.

Per metric a point is judged in four steps:

1. Expectation. A time-of-day profile (`season_bins` running means, one per slice of
   the day) predicts the value; a slice not seen yet falls back to the running level.
   Without a daily rhythm the profile simply follows the recent level.
2. Surprise. The residual becomes a z-score against the long-run mean and spread of the
   series' own residuals (`alpha_stats` sets that memory), optionally joined by a
   z-score of the value against its long-run distribution (`value_weight`). The spread
   has a floor: `rel_floor` times the series' magnitude, plus `abs_floor` in the
   metric's own units. NAB's files come in arbitrary units, so there it is 0; for
   log1p-transformed counts, 0.5 keeps a first-ever single error from looking infinite.
3. Novelty. The surprise is averaged over a few steps (`alpha_smooth`), then part of
   its recent decayed peak is subtracted (`peak_weight`, `peak_decay`): a burst or a
   level shift is reported when it starts, not on every step it lasts, and a series that
   is always jumpy stops alarming on jumps of its usual size.
4. Calibration. The result is squashed into [0, 1] with 0.5 at `z_half`. After a score
   reaches `fire`, the slot's scores are multiplied by `damping` for `refractory` steps.

Gaps (absent windows) are read from `ts`: decays advance by the number of usual steps
that passed, so a silent hour ages the state by an hour rather than by one step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_DAY = 86400.0
# Columns of the per-slot array and of the per-slot, per-metric array.
_N, _LAST, _STEP, _COOL = range(4)
_LVL, _RMEAN, _RVAR, _GMEAN, _GVAR, _SMOOTH, _PEAK = range(7)
_PARAMS = (
    "n_metrics",
    "season_bins",
    "alpha_season",
    "alpha_level",
    "alpha_stats",
    "alpha_smooth",
    "value_weight",
    "peak_decay",
    "peak_weight",
    "z_half",
    "sharpness",
    "fire",
    "refractory",
    "damping",
    "warmup",
    "rel_floor",
    "z_cap",
    "abs_floor",
)


class SeriesDetector:
    name = "series"
    version = "1.0"

    def __init__(
        self,
        n_metrics: int = 1,
        season_bins: int = 24,
        alpha_season: float = 0.1,
        alpha_level: float = 0.05,
        alpha_stats: float = 0.0015,
        alpha_smooth: float = 0.3,
        value_weight: float = 0.0,
        peak_decay: float = 0.996,
        peak_weight: float = 0.8,
        z_half: float = 1.2,
        sharpness: float = 3.0,
        fire: float = 0.5,
        refractory: int = 50,
        damping: float = 0.3,
        warmup: int = 30,
        rel_floor: float = 1e-3,
        z_cap: float = 1000.0,
        abs_floor: float = 0.0,
    ) -> None:
        self.n_metrics = int(n_metrics)
        self.season_bins = int(season_bins)
        self.alpha_season = alpha_season
        self.alpha_level = alpha_level
        self.alpha_stats = alpha_stats
        self.alpha_smooth = alpha_smooth
        self.value_weight = value_weight
        self.peak_decay = peak_decay
        self.peak_weight = peak_weight
        self.z_half = z_half
        self.sharpness = sharpness
        self.fire = fire
        self.refractory = int(refractory)
        self.damping = damping
        self.warmup = int(warmup)
        self.rel_floor = rel_floor
        self.z_cap = z_cap
        self.abs_floor = abs_floor
        self._slot = np.zeros((0, 4))
        self._metric = np.zeros((0, 7, self.n_metrics))
        # NaN marks a slice of the day not seen yet.
        self._season = np.zeros((0, self.n_metrics, self.season_bins), dtype=np.float32)

    # ----- state -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._slot.shape[0]

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _PARAMS}

    def ensure_capacity(self, n_slots: int, exact: bool = False) -> None:
        """Room for slots below n_slots; `exact` grows to n_slots only, for an owner that
        sizes its own table under a byte budget (otherwise it doubles)."""
        have = self.capacity
        if n_slots <= have:
            return
        new = n_slots if exact else max(n_slots, 2 * have, 64)

        def grow(arr: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((new,) + arr.shape[1:], fill, dtype=arr.dtype)
            out[:have] = arr
            return out

        self._slot = grow(self._slot, 0.0)
        self._metric = grow(self._metric, 0.0)
        self._season = grow(self._season, np.nan)

    def reset_slots(self, slots: np.ndarray) -> None:
        self._slot[slots] = 0.0
        self._metric[slots] = 0.0
        self._season[slots] = np.nan

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.params(),
            "slot": self._slot.copy(),
            "metric": self._metric.copy(),
            "season": self._season.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._slot = np.array(state["slot"], dtype=np.float64)
        self._metric = np.array(state["metric"], dtype=np.float64)
        self._season = np.array(state["season"], dtype=np.float32)

    def get_slot_state(self, slot: int) -> dict[str, Any]:
        return {
            "n": int(self._slot[slot, _N]),
            "step": float(self._slot[slot, _STEP]),
            "slot": self._slot[slot].copy(),
            "metric": self._metric[slot].copy(),
            "season": self._season[slot].copy(),
        }

    def set_slot_state(self, slot: int, state: dict[str, Any]) -> None:
        self.ensure_capacity(slot + 1)
        self._slot[slot] = state["slot"]
        self._metric[slot] = state["metric"]
        self._season[slot] = state["season"]

    def state_bytes_per_slot(self) -> int:
        arrays = (self._slot, self._metric, self._season)
        return int(sum(a.dtype.itemsize * int(np.prod(a.shape[1:])) for a in arrays))

    # ----- scoring ---------------------------------------------------------------
    def _inputs(
        self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """score_learn's arguments as arrays of its shapes, with room made for their slots."""
        slots = np.asarray(slots, dtype=np.int64)
        n = len(slots)
        x = np.asarray(values, dtype=np.float64).reshape(n, self.n_metrics)
        ts = np.asarray(ts, dtype=np.float64).reshape(n)
        if n:
            self.ensure_capacity(int(slots.max()) + 1)
        return slots, ts, x

    def _write_back(
        self,
        slots: np.ndarray,
        sl: np.ndarray,
        mt: np.ndarray,
        cnt: np.ndarray,
        ts: np.ndarray,
        step: np.ndarray,
        cool: np.ndarray,
    ) -> None:
        """The per-slot copies score_learn worked on, stored back once at the end."""
        sl[:, _N] = cnt + 1
        sl[:, _LAST] = ts
        sl[:, _STEP] = step
        sl[:, _COOL] = cool
        self._slot[slots] = sl
        self._metric[slots] = mt

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score each row against its slot's past, then learn it.

        slots: int (n,), unique within one call; ts: float (n,) epoch seconds;
        values: float (n, n_metrics). Returns scores in [0, 1], shape (n, n_metrics).
        """
        slots, ts, x = self._inputs(slots, ts, values)
        n = len(slots)
        if n == 0:
            return np.zeros((0, self.n_metrics))
        sl = self._slot[slots]  # (n, 4) copies; written back once at the end
        mt = self._metric[slots]  # (n, 7, m)
        cnt, step, cool = sl[:, _N], sl[:, _STEP], sl[:, _COOL]
        first = cnt == 0

        # Steps elapsed since the last point, in units of the series' usual step. The
        # usual step is learnt slowly and long gaps barely move it.
        dt = np.where(first, 0.0, ts - sl[:, _LAST])
        step = np.where((step == 0) & (dt > 0), dt, step)
        k = np.where(step > 0, np.clip(dt / np.maximum(step, 1e-9), 1.0, 1e6), 1.0)
        step = np.where((dt > 0) & ~first, step + 0.01 * (np.minimum(dt, 4.0 * step) - step), step)
        kk = k[:, None]

        lvl = np.where(first[:, None], x, mt[:, _LVL])
        bins = ((ts % _DAY) * (self.season_bins / _DAY)).astype(np.int64) % self.season_bins
        sea = self._season[slots, :, bins].astype(np.float64)  # (n, m)
        seen = ~np.isnan(sea)
        res = x - np.where(seen, sea, lvl)

        r_mean, r_var = mt[:, _RMEAN], mt[:, _RVAR]
        g_mean, g_var = mt[:, _GMEAN], mt[:, _GVAR]
        # A spread floor relative to the series' magnitude keeps a constant series from
        # turning the smallest wiggle into an unbounded surprise.
        floor = self.rel_floor * np.abs(g_mean) + self.abs_floor + 1e-9
        z = np.abs(res - r_mean) / (np.sqrt(r_var) + floor)
        if self.value_weight > 0:
            z_val = np.abs(x - g_mean) / (np.sqrt(g_var) + floor)
            z = np.maximum(z, self.value_weight * z_val)
        scoring = (cnt >= self.warmup)[:, None]
        # Capped so that one extreme step cannot mute the series for thousands of steps.
        z = np.where(scoring, np.minimum(z, self.z_cap), 0.0)

        smooth = mt[:, _SMOOTH]
        smooth = smooth + (1.0 - (1.0 - self.alpha_smooth) ** kk) * (z - smooth)
        peak = mt[:, _PEAK] * self.peak_decay**kk
        novel = np.maximum(smooth - self.peak_weight * peak, 0.0)
        peak = np.maximum(peak, smooth)

        zp = novel**self.sharpness
        score = zp / (zp + self.z_half**self.sharpness)
        score = np.where((cool > 0)[:, None], score * self.damping, score)
        fired = np.any(score >= self.fire, axis=1)
        cool = np.where(fired, float(self.refractory), np.maximum(cool - k, 0.0))

        # ----- learn -----
        a = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
        d = res - r_mean
        mt[:, _RMEAN] = r_mean + a * d
        mt[:, _RVAR] = (1.0 - a) * (r_var + a * d * d)
        d = x - g_mean
        mt[:, _GMEAN] = g_mean + a * d
        mt[:, _GVAR] = (1.0 - a) * (g_var + a * d * d)
        mt[:, _LVL] = lvl + (1.0 - (1.0 - self.alpha_level) ** kk) * (x - lvl)
        mt[:, _SMOOTH] = smooth
        mt[:, _PEAK] = peak
        new_sea = np.where(seen, sea + self.alpha_season * (x - sea), x)
        self._season[slots, :, bins] = new_sea.astype(np.float32)

        self._write_back(slots, sl, mt, cnt, ts, step, cool)
        return score
