"""A per-series choice of scale for the robust series detector: measured, not shipped.

The robustness check of docs/nab.md shows the detector breaking on a heavy, skewed tail
(`exp`), while a log scale for every series costs 7 points on the untouched files. This
variant judges a series on a compressed scale only where its own history so far calls for
it, online (each point scored before it is learnt) and with one parameter set for all:

* Every metric runs twice, side by side, each copy with its own level, time-of-day
  profile, spread, burstiness and novelty: once on the value as is, once on a log,
  log(x + shift) - log(q50 + shift), from three stochastic quantiles of the series' own
  values (q10, q50, q90). `skew_shift` picks the shift: 0 makes the three quantiles come
  out symmetric on the log scale (a log-normal series gets its plain log), 1 puts q10 at
  `skew_floor` of q90 - q10 above the log's zero, 2 anchors at zero (log(x + skew_floor
  |q50|), for non-negative data). Values below the shifted zero are held at 1% of q10's
  distance from it. Both copies always learn, so a switch needs no new warm-up.
* `skew_gate` picks when a series is judged on the log copy: 0, when Bowley's quantile
  skew of the sketch, (q90 + q10 - 2 q50) / (q90 - q10), rises above `skew_on` (after
  `skew_warm` points), back when it falls below `skew_on - skew_gap`; 1, when the log
  copy's own surprise has the lighter tail (its tail quantile, learnt anyway, lower than
  the raw copy's by a factor 1 + `skew_gap`), back when it is no longer lower; 2, the same
  on each copy's standard deviation over mean absolute deviation, which settles sooner.
* `skew_mix`: on the log scale, report the log copy's novelty (0), the smaller of both
  copies' (1) or their geometric mean (2). The firing and the damping follow the result.

With `skew_on` inf the scores equal `RobustSeriesDetector`'s exactly (the second copy is
computed and never chosen). State: twice the robust detector's rows plus five numbers per
copy (three used by the raw copy only), 400 bytes per series with one metric. An asinh((x - q50) / s) copy was
tried first and dropped after in-sample checks (docs/nab.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors.series import _COOL, _DAY, _N, SeriesDetector
from detectors.series_robust import RobustSeriesDetector

_LVL, _SMOOTH, _PEAK, _TAIL = 0, 3, 4, 5  # rows shared with RobustSeriesDetector
_Q10, _Q50, _Q90, _FLAG = range(6, 10)  # used in the raw copy's columns only
_ABS = 10  # mean absolute deviation of the residual, both copies (skew_gate 2)
_N_ROWS = 11
_OPTIONS = (
    "skew_on",
    "skew_gap",
    "skew_warm",
    "skew_rate",
    "skew_floor",
    "skew_mix",
    "skew_shift",
    "skew_gate",
)
# Standard-normal q90 - q10, so s is a standard deviation for Gaussian data.
_IQ80 = 2.5631


class ScaleChoiceDetector(RobustSeriesDetector):
    name = "series_scale_choice"

    def __init__(
        self,
        n_metrics: int = 1,
        skew_on: float = math.inf,
        skew_gap: float = 0.2,
        skew_warm: int = 300,
        skew_rate: float = 0.02,
        skew_floor: float = 0.05,
        skew_mix: int = 0,
        skew_shift: int = 0,
        skew_gate: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_metrics=n_metrics, **kwargs)
        self.skew_on = skew_on
        self.skew_gap = skew_gap
        self.skew_warm = int(skew_warm)
        self.skew_rate = skew_rate
        self.skew_floor = skew_floor
        self.skew_mix = int(skew_mix)
        self.skew_shift = int(skew_shift)
        self.skew_gate = int(skew_gate)
        m2 = 2 * self.n_metrics
        self._metric = np.zeros((0, _N_ROWS, m2))
        self._season = np.zeros((0, m2, self.season_bins), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {**super().params(), **{k: getattr(self, k) for k in _OPTIONS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if np.shape(state["metric"])[1:] != (_N_ROWS, 2 * self.n_metrics):
            raise ValueError(f"a scale-choice state keeps {_N_ROWS} rows per metric, twice")
        SeriesDetector.load_state_dict(self, state)

    def _compressed(self, raw: np.ndarray, x: np.ndarray, first: np.ndarray) -> np.ndarray:
        """log(x + shift) - log(q50 + shift), the shift chosen so that the sketch's quantiles
        come out symmetric: (q90 + shift)(q10 + shift) = (q50 + shift)^2. A log-normal series
        gets shift 0 (its plain log), a near-symmetric one a shift so large that the scale
        is all but linear. Uses the sketch before this point."""
        f = first[:, None]
        q10 = np.where(f, x, raw[:, _Q10])
        q50 = np.where(f, x, raw[:, _Q50])
        q90 = np.where(f, x, raw[:, _Q90])
        raw[:, _Q10], raw[:, _Q50], raw[:, _Q90] = q10, q50, q90
        tiny = self.rel_floor * np.abs(q50) + self.abs_floor + 1e-9
        # Skew floored at 0.05 of the spread: left-skewed or symmetric series stay near linear.
        d = np.maximum(q90 + q10 - 2.0 * q50, 0.05 * (q90 - q10)) + tiny
        # q10 + shift, at least skew_floor of the spread: a series with most of its mass at
        # one value (q10 = q50) would otherwise get a log that magnifies its noise floor.
        if self.skew_shift == 2:  # anchored at zero: log(x + skew_floor |q50|)
            lo = np.maximum(q10, 0.0) + self.skew_floor * np.abs(q50) + tiny
        else:
            sym = (q50 - q10) ** 2 / d if self.skew_shift == 0 else 0.0
            lo = np.maximum(sym, self.skew_floor * (q90 - q10)) + tiny
        mid = lo + q50 - q10  # q50 + shift
        # Below a hundredth of q10's distance from the shifted zero the log would run away.
        u = np.maximum(x - q10 + lo, 0.01 * lo)
        return np.log(u / mid)

    def _learn_sketch(
        self, raw: np.ndarray, x: np.ndarray, cnt: np.ndarray, tail_raw, tail_log
    ) -> None:
        """Stochastic quantiles (steps of skew_rate times a spread), then the skew switch."""
        q10, q50, q90 = raw[:, _Q10], raw[:, _Q50], raw[:, _Q90]
        # The step unit is the sketch's own spread once warm: the residual variance (row 2)
        # of a heavy-tailed series is set by its outliers and would throw the quantiles about.
        warm = (cnt >= self.warmup)[:, None]
        unit = np.where(warm, (q90 - q10) / _IQ80, np.sqrt(raw[:, 2]))
        unit = unit + self.rel_floor * np.abs(q50) + self.abs_floor + 1e-9
        eta = self.skew_rate * unit
        for row, p in ((_Q10, 0.1), (_Q50, 0.5), (_Q90, 0.9)):
            q = raw[:, row]
            raw[:, row] = q + eta * np.where(x < q, p - 1.0, p)
        q10, q50, q90 = raw[:, _Q10], raw[:, _Q50], raw[:, _Q90]
        raw[:, _Q90] = np.maximum(q90, q50)
        raw[:, _Q10] = np.minimum(q10, q50)
        on = raw[:, _FLAG] > 0.5
        ready = (cnt >= self.skew_warm)[:, None]
        if self.skew_gate in (1, 2):
            # The scale where the series' own surprises are least heavy-tailed: the copy
            # with the lower tail quantile (row 5), by a margin of skew_gap either way.
            t_raw, t_log = tail_raw, tail_log
            on = np.where(
                on,
                t_log <= t_raw * (1.0 + self.skew_gap),
                ready & (t_log * (1.0 + self.skew_gap) < t_raw),
            )
        else:
            skew = (q90 + q10 - 2.0 * q50) / (q90 - q10 + 1e-12)
            on = np.where(on, skew >= self.skew_on - self.skew_gap, ready & (skew > self.skew_on))
        raw[:, _FLAG] = on

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """As RobustSeriesDetector.score_learn, on both copies; the flag picks the score."""
        slots, ts, x = self._inputs(slots, ts, values)
        m = self.n_metrics
        if len(slots) == 0:
            return np.zeros((0, m))
        sl, mt = self._slot[slots], self._metric[slots]
        cnt, cool = sl[:, _N], sl[:, _COOL]
        first = cnt == 0
        k, step = self._steps(sl, ts, first)
        kk = 1.0 if bool(np.all(k == 1.0)) else k[:, None]
        raw = mt[:, :, :m]  # a view: the sketch lives in the raw copy's columns
        xx = np.concatenate([x, self._compressed(raw, x, first)], axis=1)

        lvl = np.where(first[:, None], xx, mt[:, _LVL])
        mt[:, _LVL] = lvl
        bins = ((ts % _DAY) * (self.season_bins / _DAY)).astype(np.int64) % self.season_bins
        sea = self._season[slots, :, bins].astype(np.float64)
        seen = ~np.isnan(sea)
        res = xx - np.where(seen, sea, lvl)
        z, z_raw = self._surprise(mt, res, cnt)

        smooth, peak, novel = self._novelty(mt, z, kk)
        alt = novel[:, m:]
        if self.skew_mix == 1:  # both scales must agree: the smaller novelty
            alt = np.minimum(alt, novel[:, :m])
        elif self.skew_mix == 2:  # the geometric mean
            alt = np.sqrt(alt * novel[:, :m])
        novel = np.where(raw[:, _FLAG] > 0.5, alt, novel[:, :m])

        score, cool = self._fire(novel, cool, k)

        if self.skew_gate == 2:
            # Heaviness: standard deviation over mean absolute deviation of the residual
            # (1.25 for Gaussian noise, more for a heavier tail); it settles as fast as the
            # spread does, far sooner than a tail quantile.
            a = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
            mt[:, _ABS] = mt[:, _ABS] + a * (np.abs(res - mt[:, 1]) - mt[:, _ABS])
        xb = self._learn(mt, xx, res, cnt, kk, z_raw)
        mt[:, _SMOOTH] = smooth
        mt[:, _PEAK] = peak
        if self.skew_gate == 2:
            heavy = np.sqrt(mt[:, 2]) / (mt[:, _ABS] + 1e-12)
            self._learn_sketch(raw, x, cnt, heavy[:, :m], heavy[:, m:])
        else:
            self._learn_sketch(raw, x, cnt, mt[:, _TAIL, :m], mt[:, _TAIL, m:])
        new_sea = np.where(seen, sea + self.alpha_season * (xb - sea), xx)
        self._season[slots, :, bins] = new_sea.astype(np.float32)
        self._write_back(slots, sl, mt, cnt, ts, step, cool)
        return score
