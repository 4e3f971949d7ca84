"""The one protocol every detector implements.

A detector scores and learns on a batch of account-window feature rows. Scores are in
[0, 1]: higher is more suspicious. State is plain data (`state_dict`) so a runner can
checkpoint and restore it, and a detector can be cloned from its parameters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch


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
        """Why row i of a batch already scored scored as it did, in words a person can
        check. Everything it needs comes from the batch: a detector that explains against
        its state before learning leaves that in `batch.context` under its own name."""
        ...

    def forget(self, accounts: np.ndarray) -> None:
        """Drop what is kept about these accounts (uint64 codes): the engine evicted them."""
        ...

    def reserve(self, n_accounts: int) -> None:
        """Size any per-account arrays for n_accounts: the engine calls it as its account
        table grows, so that no detector's arrays grow ahead of the byte budget."""
        ...

    def params(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NoAccountState:
    """Mixin for detectors that keep nothing per account."""

    def forget(self, accounts: np.ndarray) -> None:
        return None

    def reserve(self, n_accounts: int) -> None:
        return None


class ScoreThenLearn:
    """Mixin: the plain prequential order, for detectors with nothing to share between them."""

    def score_learn(self, batch: FeatureBatch) -> np.ndarray:
        scores = self.score(batch)  # type: ignore[attr-defined]
        self.learn(batch)  # type: ignore[attr-defined]
        return scores


def clone(det: Detector) -> Detector:
    """A fresh, untrained detector with the same parameters."""
    return type(det)(**copy.deepcopy(det.params()))
