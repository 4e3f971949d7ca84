"""Online anomaly scoring for many time series at once.

Each slot is one series (one account's metrics, or one NAB file). State is a fixed set
of floats per slot, held in numpy arrays, so memory per series is constant and a batch
of many series is scored with array operations rather than a Python loop.

Interim implementation: robust EWMA z-score. The interface is what the engine relies on.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SeriesDetector:
    name = "series"
    version = "0.1"

    def __init__(self, n_metrics: int = 1, alpha: float = 0.05, warmup: int = 12) -> None:
        self.n_metrics = n_metrics
        self.alpha = alpha
        self.warmup = warmup
        self._mean = np.zeros((0, n_metrics))
        self._var = np.zeros((0, n_metrics))
        self._n = np.zeros(0, dtype=np.int64)

    def params(self) -> dict[str, Any]:
        return {"n_metrics": self.n_metrics, "alpha": self.alpha, "warmup": self.warmup}

    def ensure_capacity(self, n_slots: int) -> None:
        have = self._n.shape[0]
        if n_slots <= have:
            return
        new = max(n_slots, 2 * have, 64)
        grow = new - have
        self._mean = np.vstack([self._mean, np.zeros((grow, self.n_metrics))])
        self._var = np.vstack([self._var, np.zeros((grow, self.n_metrics))])
        self._n = np.concatenate([self._n, np.zeros(grow, dtype=np.int64)])

    def reset_slots(self, slots: np.ndarray) -> None:
        self._mean[slots] = 0
        self._var[slots] = 0
        self._n[slots] = 0

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score each row against its slot's past, then learn it.

        slots: int (n,), unique within one call; ts: float (n,) epoch seconds;
        values: float (n, n_metrics). Returns scores in [0, 1], shape (n, n_metrics).
        """
        values = np.asarray(values, dtype=np.float64).reshape(len(slots), self.n_metrics)
        self.ensure_capacity(int(slots.max()) + 1 if len(slots) else 0)
        mean, var, n = self._mean[slots], self._var[slots], self._n[slots]
        sd = np.sqrt(var) + 1e-9 + 0.1 * np.abs(mean) + 1.0
        z = np.abs(values - mean) / sd
        scores = 1.0 - np.exp(-np.maximum(z - 3.0, 0.0))
        scores[n < self.warmup] = 0.0
        a = np.where(n[:, None] == 0, 1.0, self.alpha)
        delta = values - mean
        self._mean[slots] = mean + a * delta
        self._var[slots] = (1 - a) * (var + a * delta * delta)
        self._n[slots] = n + 1
        return scores

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self._mean.copy(), "var": self._var.copy(), "n": self._n.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._mean, self._var, self._n = state["mean"], state["var"], state["n"]

    def get_slot_state(self, slot: int) -> dict[str, Any]:
        return {"mean": self._mean[slot].copy(), "var": self._var[slot].copy(), "n": self._n[slot]}

    def set_slot_state(self, slot: int, state: dict[str, Any]) -> None:
        self.ensure_capacity(slot + 1)
        self._mean[slot], self._var[slot], self._n[slot] = state["mean"], state["var"], state["n"]
