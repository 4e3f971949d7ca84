"""Variants of the robust series detector that were measured and not shipped.

Each was tried for issue 21 (holding up on kinds of data the detector was not tuned on)
and judged by leave-one-category-out scores on `../shared/nab` (docs/nab.md, "Variants
tried"). None beat the shipped `RobustSeriesDetector` on the pooled held-out score without
losing on the worst fold, so they live here, off by default, to keep the figures
reproducible rather than in the engine's detector:

* `tail_k` > 0: burst memory. The three largest recent bursts (a burst: a run of steps
  with surprise above `tail_ref`, entered once, at its peak, when it ends), decaying by
  `tail_decay` a step; the `tail_k`-th largest counts as usual burst size alongside the
  tail quantile, so the later bursts of a cluster stop alarming.
* `box_cox` < 1: judge each series on a Box-Cox scale (0: log1p) of |x| / c, the sign kept,
  c the series' own running mean magnitude, so a count's spread grows less with its level.
* `season_offset` = 1: the time-of-day profile holds each slice's offset from the running
  level, so a level shift is absorbed as fast as the level moves, not slice by slice.
* `cal_ref` finite: per-series alarm-rate calibration. Each series tracks the level its own
  novelty exceeds in a share `cal_p` of steps; above `cal_ref` the novelty is divided by
  the excess, so a series that keeps producing fresh bursts stops alarming on their size.
* `huber` finite: the spread is a mean absolute deviation (in standard deviations) learnt
  from deviations bounded at `huber` spreads, not a variance: an outlier moves it linearly
  and by a bounded step. The level and the profile learn as before.
* `pareto` > 0: a Pareto tail beyond the tail quantile. A second quantile of the surprise
  (exceeded ten times as often) gives the series' tail index; where it is below `pareto`
  (a Gaussian's is about 7) a surprise beyond the tail quantile is scored by how rare a
  power-law tail makes it, a log scale for the upward tail only, never above the linear
  score. Needs `tail_ref` finite.

`-p skew_...` runs the per-series choice of scale instead (detectors/nab/scale_choice.py).

With every option off the scores equal the shipped detector's exactly. Run as
`python -m detectors.nab.variants --data ../shared/nab/data -p tail_k=2 -p tail_decay=0.995`
(add `--transforms` for the robustness table of detectors/nab/robustness.py).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from detectors.series import _COOL, _DAY, _N, SeriesDetector
from detectors.series_robust import RobustSeriesDetector

_LVL, _RMEAN, _RVAR, _SMOOTH, _PEAK = range(5)  # rows shared with RobustSeriesDetector
_TAIL = 5
_SCALE, _CAL, _EP, _M1, _M2, _M3, _T2 = range(6, 13)
_N_ROWS = 13
_OPTIONS = (
    "box_cox",
    "season_offset",
    "cal_p",
    "cal_ref",
    "tail_k",
    "tail_decay",
    "huber",
    "pareto",
)
# Mean absolute deviation of a normal variable, in standard deviations.
_MAD_SD = math.sqrt(2.0 / math.pi)


class VariantSeriesDetector(RobustSeriesDetector):
    name = "series_variant"

    def __init__(
        self,
        n_metrics: int = 1,
        box_cox: float = 1.0,
        season_offset: int = 0,
        cal_p: float = 0.003,
        cal_ref: float = math.inf,
        tail_k: int = 0,
        tail_decay: float = 0.995,
        huber: float = math.inf,
        pareto: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_metrics=n_metrics, **kwargs)
        self.box_cox = box_cox
        self.season_offset = int(season_offset)
        self.cal_p = cal_p
        self.cal_ref = cal_ref
        self.tail_k = int(tail_k)
        self.tail_decay = tail_decay
        self.huber = huber
        self.pareto = pareto
        self._metric = np.zeros((0, _N_ROWS, self.n_metrics))

    def params(self) -> dict[str, Any]:
        return {**super().params(), **{k: getattr(self, k) for k in _OPTIONS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if np.shape(state["metric"])[1:2] != (_N_ROWS,):
            raise ValueError(f"a variant state keeps {_N_ROWS} rows per metric")
        SeriesDetector.load_state_dict(self, state)

    def _transform(self, mt: np.ndarray, x: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        if self.box_cox >= 1.0:
            return x
        ax = np.abs(x)
        scale = np.where(cnt[:, None] == 0, ax, mt[:, _SCALE])
        u = ax / (scale + 1e-9)
        lam = self.box_cox
        y = np.log1p(u) if lam <= 0.0 else ((1.0 + u) ** lam - 1.0) / lam
        # The scale is learnt after its point is transformed, at the spread's rate.
        a = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
        mt[:, _SCALE] = scale + a * (ax - scale)
        return np.copysign(y, x)

    def _surprise(self, mt: np.ndarray, res: np.ndarray, cnt: np.ndarray):
        z, z_raw = self._surprise_bursts(mt, res, cnt)
        if self.pareto <= 0.0 or not math.isfinite(self.tail_ref):
            return z, z_raw
        # Pareto tail: from two tail quantiles (T1 exceeded a share tail_p of steps, T2 ten
        # times as often) the tail index a = ln 10 / ln(T1 / T2); beyond T1 a surprise z is
        # taken to be as rare as tail_p (z / T1)^-a and reported as the Gaussian-like level
        # of that rarity, sqrt(L^2 + 2 a ln(z / T1)), L the linear score at T1. Only where
        # the tail is heavier than `pareto` (a Gaussian's index is about 7), and only ever
        # lower than the linear score: a heavy tail is judged on a log scale beyond T1.
        t1 = mt[:, _TAIL]
        t2 = np.where(cnt[:, None] == 0, 0.75 * t1, mt[:, _T2])
        a = math.log(10.0) / np.log(np.maximum(t1 / np.maximum(t2, 1e-12), 1.0 + 1e-6))
        lin_t1 = t1 * (self.tail_ref / np.maximum(t1, self.tail_ref))
        ratio = np.maximum(z_raw / np.maximum(t1, 1e-12), 1.0)
        zp = np.sqrt(lin_t1 * lin_t1 + 2.0 * a * np.log(ratio))
        heavy = (a < self.pareto) & (cnt >= 10 * self.warmup)[:, None]
        return np.where(heavy & (z_raw > t1), np.minimum(z, zp), z), z_raw

    def _learn_t2(self, mt: np.ndarray, z_raw: np.ndarray, cnt: np.ndarray) -> None:
        """T2: the level the surprise exceeds ten times as often as the tail quantile."""
        if self.pareto <= 0.0:
            return
        p = min(10.0 * self.tail_p, 0.5)
        t2 = np.where(cnt[:, None] == 0, 0.75 * min(self.tail_ref, 1e3), mt[:, _T2])
        up = math.exp(self.tail_rate)
        down = math.exp(-self.tail_rate * p / (1.0 - p))
        warm = (cnt >= self.warmup)[:, None]
        mt[:, _T2] = np.where(warm, t2 * np.where(z_raw > t2, up, down), t2)

    def _surprise_bursts(self, mt: np.ndarray, res: np.ndarray, cnt: np.ndarray):
        if not self.tail_k or not math.isfinite(self.tail_ref):
            return super()._surprise(mt, res, cnt)
        # The usual burst size is the larger of the tail quantile and the k-th largest
        # recent burst; the parent divides by its excess over tail_ref.
        held = mt[:, _TAIL].copy()
        mt[:, _TAIL] = np.maximum(held, mt[:, _M1 + min(self.tail_k, 3) - 1])
        out = super()._surprise(mt, res, cnt)
        mt[:, _TAIL] = held
        return out

    def _learn_bursts(self, mt: np.ndarray, z_raw: np.ndarray, kk, ready: np.ndarray) -> None:
        """The three largest recent bursts (a burst: a run of steps with surprise above
        tail_ref, entered once, with its peak, when it ends), each decaying by tail_decay
        a step. Bursts enter only once the spread has settled (10 warmups)."""
        ep = mt[:, _EP]
        inside = ready & (z_raw > self.tail_ref)
        done = np.where(~inside & (ep > 0), ep, 0.0)
        mt[:, _EP] = np.where(inside, np.maximum(ep, z_raw), 0.0)
        d = self.tail_decay**kk
        m1, m2, m3 = mt[:, _M1] * d, mt[:, _M2] * d, mt[:, _M3] * d
        mt[:, _M1] = np.maximum(m1, done)
        mt[:, _M2] = np.maximum(m2, np.minimum(m1, done))
        mt[:, _M3] = np.maximum(m3, np.minimum(m2, done))

    def _learn(self, mt, x, res, cnt, kk, z_raw):
        if math.isinf(self.huber):
            return super()._learn(mt, x, res, cnt, kk, z_raw)
        # The spread row holds the square of a mean absolute deviation (in standard
        # deviations), learnt from deviations bounded at `huber` spreads once warm: an
        # outlier moves it linearly and by a bounded step, not by its square.
        a = np.maximum(self.alpha_stats, 1.0 / (cnt + 1.0))[:, None]
        spread = np.sqrt(mt[:, _RVAR])
        d = res - mt[:, _RMEAN]
        bound = self.huber * (spread + self.rel_floor * np.abs(mt[:, _LVL]) + self.abs_floor + 1e-9)
        warm = (cnt >= self.warmup)[:, None]
        db = np.where(warm, np.clip(d, -bound, bound), d)
        mt[:, _RMEAN] = mt[:, _RMEAN] + a * db
        mt[:, _RVAR] = (spread + a * (np.abs(db) / _MAD_SD - spread)) ** 2
        # The level, the profile and the tail quantile learn as in the shipped detector.
        held = mt[:, _RMEAN].copy(), mt[:, _RVAR].copy()
        xb = super()._learn(mt, x, res, cnt, kk, z_raw)
        mt[:, _RMEAN], mt[:, _RVAR] = held
        return xb

    def _calibrate(self, mt: np.ndarray, novel: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        if not math.isfinite(self.cal_ref):
            return novel
        q = np.where(cnt[:, None] == 0, self.cal_ref, mt[:, _CAL])
        out = novel * (self.cal_ref / np.maximum(q, self.cal_ref))
        rate = 5.0 * self.tail_rate
        up, down = math.exp(rate), math.exp(-rate * self.cal_p / (1.0 - self.cal_p))
        warm = (cnt >= self.warmup)[:, None]
        q = np.where(warm, q * np.where(novel > q, up, down), q)
        # Floored so a long calm spell does not need many bursts to climb back.
        mt[:, _CAL] = np.maximum(q, 0.25 * self.cal_ref)
        return out

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """As RobustSeriesDetector.score_learn, with the options in their places."""
        slots, ts, x = self._inputs(slots, ts, values)
        if len(slots) == 0:
            return np.zeros((0, self.n_metrics))
        sl, mt = self._slot[slots], self._metric[slots]
        cnt, cool = sl[:, _N], sl[:, _COOL]
        first = cnt == 0
        k, step = self._steps(sl, ts, first)
        kk = 1.0 if bool(np.all(k == 1.0)) else k[:, None]
        x = self._transform(mt, x, cnt)

        lvl = np.where(first[:, None], x, mt[:, _LVL])
        mt[:, _LVL] = lvl
        bins = ((ts % _DAY) * (self.season_bins / _DAY)).astype(np.int64) % self.season_bins
        sea = self._season[slots, :, bins].astype(np.float64)
        seen = ~np.isnan(sea)
        if self.season_offset:
            res = x - lvl - np.where(seen, sea, 0.0)
        else:
            res = x - np.where(seen, sea, lvl)
        z, z_raw = self._surprise(mt, res, cnt)

        smooth, peak, novel = self._novelty(mt, z, kk)
        novel = self._calibrate(mt, novel, cnt)

        score, cool = self._fire(novel, cool, k)

        xb = self._learn(mt, x, res, cnt, kk, z_raw)
        self._learn_t2(mt, z_raw, cnt)
        if self.tail_k:
            self._learn_bursts(mt, z_raw, kk, (cnt >= 10 * self.warmup)[:, None])
        mt[:, _SMOOTH] = smooth
        mt[:, _PEAK] = peak
        if self.season_offset:
            new_sea = np.where(seen, sea + self.alpha_season * (xb - lvl - sea), xb - lvl)
        else:
            new_sea = np.where(seen, sea + self.alpha_season * (xb - sea), x)
        self._season[slots, :, bins] = new_sea.astype(np.float32)
        self._write_back(slots, sl, mt, cnt, ts, step, cool)
        return score


def _param(item: str) -> tuple[str, float]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    return key.strip(), float(raw)


def main(argv: list[str] | None = None) -> None:
    from detectors.nab import crossval, robustness
    from detectors.nab.scale_choice import ScaleChoiceDetector

    ap = argparse.ArgumentParser(description="Leave-one-category-out scores of a variant")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("-p", "--param", type=_param, action="append", default=[])
    ap.add_argument("--transforms", action="store_true", help="also the robustness table")
    args = ap.parse_args(argv)
    fixed = {
        k: int(v) if k in ("season_offset", "refractory", "tail_k", "skew_warm") else v
        for k, v in args.param
    }
    profiles = args.data.parent / "profiles.json"
    try:
        corpus = crossval.load_corpus(
            args.data,
            args.data.parent / "labels/combined_windows.json",
            profiles if profiles.exists() else None,
        )
        # The per-series scale choice (detectors/nab/scale_choice.py) is a class of its own.
        cls = (
            ScaleChoiceDetector
            if any(k.startswith("skew_") for k in fixed)
            else VariantSeriesDetector
        )
        start = cls(**fixed).params()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    start.pop("n_metrics")
    start.update({k: v for k, v in crossval.STARTS["series_robust"].items() if k not in fixed})
    grid = {k: v for k, v in crossval.GRIDS["series_robust"].items() if k not in fixed}

    def make(p: dict[str, Any]) -> RobustSeriesDetector:
        return cls(**{"n_metrics": 1, **p})

    report = crossval.run_cv(corpus, make, start, grid, 2)
    for line in crossval.format_report(report):
        print(line)
    print(f"held-out std at tuning threshold, mean: {report.mean_held_out(fixed=True)[0]:.1f}")
    if args.transforms:
        table = robustness.held_out_under_transforms(corpus, report, make, start)
        for line in robustness.format_table(table):
            print(line)


if __name__ == "__main__":
    main()
