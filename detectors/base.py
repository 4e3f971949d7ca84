"""The one protocol every detector implements.

A detector scores and learns on a batch of account-window feature rows. Scores are in
[0, 1]: higher is more suspicious. State is plain data (`state_dict`) so a runner can
checkpoint and restore it, and a detector can be cloned from its parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streams.alerts import Reason

_BIG = float(np.finfo(np.float64).max)


def fill_nan(x: np.ndarray, nan: float = 0.0) -> np.ndarray:
    """np.nan_to_num without its overhead, which dominates on the small arrays of one
    window: NaN becomes `nan`, then infinities the largest finite values."""
    x = np.asarray(x, dtype=np.float64)
    return np.minimum(np.maximum(np.where(np.isnan(x), nan, x), -_BIG), _BIG)


@dataclass
class FeatureBatch:
    """Account-window rows: `X[i]` holds FEATURES for account `account_ids[i]`."""

    X: np.ndarray  # float64, shape (n, len(columns))
    columns: tuple[str, ...]
    account_ids: np.ndarray  # object (str)
    slots: np.ndarray  # int64: the account's slot in the engine's state table
    window_start: np.ndarray  # float64 epoch seconds
    window_end: np.ndarray  # float64 epoch seconds
    plans: np.ndarray  # object (str)
    context: dict[str, Any] = field(default_factory=dict)  # e.g. related accounts per row

    def __len__(self) -> int:
        return self.X.shape[0]

    def col(self, name: str) -> np.ndarray:
        try:
            return self.X[:, self.columns.index(name)]
        except ValueError:
            # A feature this batch does not carry reads as missing, never as an error.
            return np.full(len(self), np.nan)

    def take(self, idx: np.ndarray) -> FeatureBatch:
        return FeatureBatch(
            X=self.X[idx],
            columns=self.columns,
            account_ids=self.account_ids[idx],
            slots=self.slots[idx],
            window_start=self.window_start[idx],
            window_end=self.window_end[idx],
            plans=self.plans[idx],
            context={k: [v[i] for i in idx] for k, v in self.context.items()},
        )


@dataclass(frozen=True)
class Explanation:
    category: str | None
    reasons: list[Reason]


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str

    def score(self, batch: FeatureBatch) -> np.ndarray:
        """Scores in [0, 1], one per row. Must not change state."""
        ...

    def learn(self, batch: FeatureBatch) -> None:
        """Update state with rows already scored."""
        ...

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        """Score, then learn the same rows: what a runner calls on each closed window."""
        ...

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        """Why row i scored as it did, in words a person can check."""
        ...

    def params(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ScoreThenLearn:
    """Mixin: the plain prequential order, for detectors with nothing to share between them."""

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        scores = self.score(batch)  # type: ignore[attr-defined]
        self.learn(batch)  # type: ignore[attr-defined]
        return scores


def clone(det: Detector) -> Detector:
    """A fresh, untrained detector with the same parameters."""
    return type(det)(**copy.deepcopy(det.params()))
