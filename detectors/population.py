"""Population anomaly: river HalfSpaceTrees over scaled account-window vectors.

It learns what account-windows look like across all accounts, so it catches behaviour
that is rare everywhere even for an account with no history. Counts are log-scaled and
squashed into [0, 1] with fixed ranges, which HalfSpaceTrees needs and which, unlike an
online min-max scaler, does not drift as extreme windows arrive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import anomaly

from detectors.base import Explanation, NoAccountState
from detectors.hst_batch import BatchScorer, pivots
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan

BINS = 1000
HIST_DECAY = 0.999  # per window: the reference is the last few thousand windows
RANK_FLOOR = 0.98  # rank among recent windows below which the score is 0

# feature -> upper end of its log1p range; rates are already in [0, 1].
SCALES = {
    "requests": 8.0,
    "tokens": 14.0,
    "tokens_per_request": 10.0,
    "completion_ratio": 4.0,
    "distinct_ips": 4.0,
    "distinct_countries": 3.0,
    "distinct_user_agents": 3.0,
    "new_ips": 4.0,
    "new_countries": 3.0,
    "prompt_repeat_rate": None,
    "error_rate": None,
    "auth_fail_rate": None,
    "content_filter_rate": None,
    "length_rate": None,
    "flagged_rate": None,
    "moderation_mean": None,
    "interarrival_cv": 1.5,
    "model_entropy": 2.5,
}
_NAMES = list(SCALES)
_TOPS = np.array([top or 0.0 for top in SCALES.values()])
_LOG = _TOPS > 0


class PopulationDetector(NoAccountState):
    name = "population"
    version = "1"

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
        min_requests: int = 5,
        learn_every: int = 4,
        hist_decay: float = HIST_DECAY,
        rank_floor: float = RANK_FLOOR,
    ) -> None:
        self.hist_decay, self.rank_floor = hist_decay, rank_floor
        self.n_trees, self.height, self.window_size, self.seed = n_trees, height, window_size, seed
        self.min_requests, self.learn_every = min_requests, learn_every
        self._tick = 0
        self._hist = np.zeros(BINS)
        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._seen = 0
        self._scorer = BatchScorer()
        self._pivots = 0  # of this model since it was made or restored: the scorer's key
        # What the population usually looks like, per scaled feature: a decayed mean of the
        # rows learned, for explanations only (scores come from the trees).
        self._usual_sum = np.zeros(len(_NAMES))
        self._usual_weight = 0.0

    def params(self) -> dict[str, Any]:
        return {
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "seed": self.seed,
            "min_requests": self.min_requests,
            "learn_every": self.learn_every,
            "hist_decay": self.hist_decay,
            "rank_floor": self.rank_floor,
        }

    def _matrix(self, batch: FeatureBatch) -> np.ndarray:
        M = fill_nan(np.stack([batch.col(name) for name in _NAMES], axis=1))
        M[:, _LOG] = np.log1p(np.maximum(M[:, _LOG], 0.0)) / _TOPS[_LOG]
        return np.clip(M, 0.0, 1.0)

    def _active(self, batch: FeatureBatch) -> np.ndarray:
        # Windows with a handful of requests (most of them, and too few to be odd) are
        # neither scored nor learnt: the trees would learn mostly noise, at a cost a row.
        return np.flatnonzero(fill_nan(batch.col("requests")) >= self.min_requests)

    def raw_scores(self, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        idx = self._active(batch)
        if self._seen < self.window_size or len(idx) == 0:
            return idx, np.zeros(0)  # the trees hold no mass until a window is learned
        X = self._matrix(batch.take(idx))
        return idx, self._scorer.scores(self.model, X, _NAMES, masses_key=self._pivots)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw HalfSpaceTrees scores crowd into a narrow band; rank them against recent ones.

        The score is 0 below the recent `rank_floor` quantile (98th percentile by default)
        and reaches 1 at the top, so it reads as "rarer than nearly every account-window
        seen lately".
        """
        total = self._hist.sum()
        if total < self.window_size:
            return np.zeros_like(raw)
        cdf = np.cumsum(self._hist) / total
        rank = cdf[np.clip((raw * BINS).astype(int), 0, BINS - 1)]
        # Rounded so that the default divides by exactly 0.02, as it always has.
        return np.clip((rank - self.rank_floor) / round(1.0 - self.rank_floor, 12), 0.0, 1.0)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        out = np.zeros(len(batch))
        idx, raw = self.raw_scores(batch)
        if len(raw):
            out[idx] = self.calibrate(raw)
        return out

    def learn(self, batch: FeatureBatch) -> None:
        idx = self._active(batch)
        # Learning on a regular sample keeps the population profile at a quarter the cost.
        picks = idx[(np.arange(len(idx)) + self._tick) % self.learn_every == 0]
        self._tick += len(idx)
        self._pivots += pivots(self.model, len(picks))
        self._seen += len(picks)
        if len(picks):
            M = self._matrix(batch.take(picks))
            self._scorer.learn(self.model, M, _NAMES)
            self._usual_sum = self._usual_sum * self.hist_decay + M.sum(axis=0)
            self._usual_weight = self._usual_weight * self.hist_decay + len(M)

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        out = np.zeros(len(batch))
        idx, raw = self.raw_scores(batch)
        if len(raw):
            out[idx] = self.calibrate(raw)
            self._hist *= self.hist_decay
            self._hist += np.bincount(
                np.clip((raw * BINS).astype(int), 0, BINS - 1), minlength=BINS
            )
        self.learn(batch)
        return out

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        """The features on which this row stands furthest from the population's usual
        account-window, in their own units (at most three, each a clear step away)."""
        if self._usual_weight <= 0:
            return Explanation(None, [])
        usual = self._usual_sum / self._usual_weight
        x = self._matrix(batch.take(np.array([i])))[0]
        gap = np.abs(x - usual)
        reasons = []
        for j in np.argsort(-gap)[:3]:
            if gap[j] < 0.15:  # of the feature's scaled range: closer is not unusual
                break
            name = _NAMES[j]
            value = float(fill_nan(batch.col(name)[i : i + 1])[0])
            typical = float(np.expm1(usual[j] * _TOPS[j]) if _LOG[j] else usual[j])
            text = (
                f"{name.replace('_', ' ')} {value:,.3g} vs {typical:,.3g} typical across accounts"
            )
            reasons.append(Reason(name, value, typical, text))
        return Explanation(None, reasons)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seen": self._seen,
            "tick": self._tick,
            "hist": self._hist,
            "usual": (self._usual_sum, self._usual_weight),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model, self._seen, self._tick = state["model"], state["seen"], state["tick"]
        self._pivots += 1  # another model: its masses are read afresh
        self._hist = state["hist"].copy()
        total, weight = state["usual"]
        self._usual_sum, self._usual_weight = total.copy(), float(weight)
