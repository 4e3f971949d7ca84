"""Online anomaly scoring for many time series at once.

Each slot is one series (one account's metrics, or one NAB file). State is a fixed set
of floats per slot, held in numpy arrays, so memory per series is constant and a batch
of many series is scored with array operations rather than a Python loop.

Per metric a point is judged in four steps:

1. Expectation. A time-of-day profile (`season_bins` running means, one per slice of the
   day) predicts the value; a slice not yet seen falls back to the series' running level.
   With no daily rhythm the profile simply tracks the recent level.
2. Surprise. The residual is turned into a z-score against the long-run mean and spread
   of the series' own residuals, and the value itself into a z-score against the
   long-run distribution of values; the larger (the latter down-weighted) wins.
3. Smoothing and novelty. The surprise is averaged over a few steps, then the decayed
   peak of recent surprise is partly subtracted, so a level shift or a burst reports
   when it starts rather than on every step it lasts.
4. Calibration. The result is squashed into [0, 1] with 0.5 at `z_half`; after a score
   reaches `fire` the slot's scores are damped for `refractory` steps.

Gaps (absent windows) are read from `ts`: decays advance by the number of typical steps
that passed, so a quiet hour counts as an hour, not as one step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_DAY = 86400.0
_SLOT_FIELDS = ("n", "t0", "last_ts", "step", "cool")
_METRIC_FIELDS = ("lvl", "r_mean", "r_var", "g_mean", "g_var", "smooth", "peak")
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
        alpha_stats: float = 0.001,
        alpha_smooth: float = 0.3,
        value_weight: float = 0.0,
        peak_decay: float = 0.995,
        peak_weight: float = 0.8,
        z_half: float = 1.2,
        sharpness: float = 3.0,
        fire: float = 0.5,
        refractory: int = 50,
        damping: float = 0.3,
        warmup: int = 30,
        rel_floor: float = 1e-3,
        z_cap: float = 1000.0,
    ) -> None:
        self.n_metrics = n_metrics
        self.season_bins = season_bins
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
        self.refractory = refractory
        self.damping = damping
        self.warmup = warmup
        self.rel_floor = rel_floor
        self.z_cap = z_cap
        self._s: dict[str, np.ndarray] = {}
        self._alloc(0)

    # ----- state -----------------------------------------------------------------
    def _alloc(self, cap: int) -> None:
        m, b = self.n_metrics, self.season_bins
        self._s = {f: np.zeros(cap) for f in _SLOT_FIELDS}
        self._s.update({f: np.zeros((cap, m)) for f in _METRIC_FIELDS})
        # NaN marks a slice of the day not seen yet.
        self._s["season"] = np.full((cap, m, b), np.nan, dtype=np.float32)

    @property
    def capacity(self) -> int:
        return self._s["n"].shape[0]

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _PARAMS}

    def ensure_capacity(self, n_slots: int) -> None:
        have = self.capacity
        if n_slots <= have:
            return
        new = max(n_slots, 2 * have, 64)
        for k, arr in self._s.items():
            fill = np.nan if k == "season" else 0
            grown = np.full((new,) + arr.shape[1:], fill, dtype=arr.dtype)
            grown[:have] = arr
            self._s[k] = grown

    def reset_slots(self, slots: np.ndarray) -> None:
        for k, arr in self._s.items():
            arr[slots] = np.nan if k == "season" else 0

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params(), **{k: v.copy() for k, v in self._s.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._s = {k: np.array(state[k], dtype=v.dtype, copy=True) for k, v in self._s.items()}

    def get_slot_state(self, slot: int) -> dict[str, Any]:
        return {k: v[slot].copy() for k, v in self._s.items()}

    def set_slot_state(self, slot: int, state: dict[str, Any]) -> None:
        self.ensure_capacity(slot + 1)
        for k, v in self._s.items():
            v[slot] = state[k]

    def state_bytes_per_slot(self) -> int:
        return int(sum(v.dtype.itemsize * int(np.prod(v.shape[1:])) for v in self._s.values()))

    # ----- scoring ---------------------------------------------------------------
    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score each row against its slot's past, then learn it.

        slots: int (n,), unique within one call; ts: float (n,) epoch seconds;
        values: float (n, n_metrics). Returns scores in [0, 1], shape (n, n_metrics).
        """
        slots = np.asarray(slots, dtype=np.int64)
        n = len(slots)
        x = np.asarray(values, dtype=np.float64).reshape(n, self.n_metrics)
        ts = np.asarray(ts, dtype=np.float64).reshape(n)
        if n == 0:
            return np.zeros((0, self.n_metrics))
        self.ensure_capacity(int(slots.max()) + 1)
        s = self._s
        cnt, last, step = s["n"][slots], s["last_ts"][slots], s["step"][slots]
        first = cnt == 0
        t0 = np.where(first, ts, s["t0"][slots])

        # Steps elapsed since the last point, in units of the series' usual step; the
        # usual step is learnt slowly and ignores long gaps.
        dt = np.where(first, 0.0, ts - last)
        step = np.where((step == 0) & (dt > 0), dt, step)
        k = np.where(step > 0, np.clip(dt / np.maximum(step, 1e-9), 1.0, 1e6), 1.0)
        upd = (dt > 0) & ~first
        step = np.where(upd, step + 0.01 * (np.minimum(dt, 4.0 * step) - step), step)
        kk = k[:, None]

        lvl = np.where(first[:, None], x, s["lvl"][slots])
        bins = ((ts % _DAY) * (self.season_bins / _DAY)).astype(np.int64) % self.season_bins
        sea = s["season"][slots, :, bins].astype(np.float64)  # (n, m)
        seen = ~np.isnan(sea)
        pred = np.where(seen, sea, lvl)
        res = x - pred

        r_mean, r_var = s["r_mean"][slots], s["r_var"][slots]
        g_mean, g_var = s["g_mean"][slots], s["g_var"][slots]
        # A spread floor relative to the series' magnitude keeps a constant series from
        # turning the smallest wiggle into an infinite surprise.
        floor = self.rel_floor * np.abs(g_mean) + 1e-9
        z_res = np.abs(res - r_mean) / (np.sqrt(r_var) + floor)
        z_val = np.abs(x - g_mean) / (np.sqrt(g_var) + floor)
        z = np.maximum(z_res, self.value_weight * z_val)
        scoring = (cnt >= self.warmup)[:, None]
        # Capped so that one extreme step cannot mute the series for thousands of steps.
        z = np.where(scoring, np.minimum(z, self.z_cap), 0.0)

        smooth = s["smooth"][slots]
        a_sm = 1.0 - (1.0 - self.alpha_smooth) ** kk
        smooth = smooth + a_sm * (z - smooth)
        peak = s["peak"][slots] * self.peak_decay**kk
        novel = np.maximum(smooth - self.peak_weight * peak, 0.0)
        peak = np.maximum(peak, smooth)

        zp = novel**self.sharpness
        score = zp / (zp + self.z_half**self.sharpness)
        cool = s["cool"][slots]
        score = np.where((cool > 0)[:, None], score * self.damping, score)
        fired = np.any(score >= self.fire, axis=1)
        cool = np.where(fired, float(self.refractory), np.maximum(cool - k, 0.0))

        # ----- learn -----
        a_st = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
        d = res - r_mean
        r_mean = r_mean + a_st * d
        r_var = (1.0 - a_st) * (r_var + a_st * d * d)
        d = x - g_mean
        g_mean = g_mean + a_st * d
        g_var = (1.0 - a_st) * (g_var + a_st * d * d)
        lvl = lvl + (1.0 - (1.0 - self.alpha_level) ** kk) * (x - lvl)
        new_sea = np.where(seen, sea + self.alpha_season * (x - sea), x)
        s["season"][slots, :, bins] = new_sea.astype(np.float32)

        s["n"][slots] = cnt + 1
        s["t0"][slots] = t0
        s["last_ts"][slots] = ts
        s["step"][slots] = step
        s["cool"][slots] = cool
        s["lvl"][slots] = lvl
        s["r_mean"][slots] = r_mean
        s["r_var"][slots] = r_var
        s["g_mean"][slots] = g_mean
        s["g_var"][slots] = g_var
        s["smooth"][slots] = smooth
        s["peak"][slots] = peak
        return score
