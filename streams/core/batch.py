"""The features stage's output, which every detector scores: account-window rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
