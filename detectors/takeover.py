"""Gradual account takeover: a stranger's country beside the owner's, window after window.

A leaked key is loud: a dozen countries at once. A key taken over quietly is used from one
new place, at first beside the owner's usual traffic, then more and more instead of it.
Per-window features see one extra country, which travel and office moves show as well;
what they do not show is the new country and the usual ones *in the same windows*,
repeatedly, on an account with an established history, with the new country taking
over most of the requests (a second office keeps a minor share) (`streams/features/history.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.base import Explanation, NoAccountState, ScoreThenLearn
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan


class TakeoverDetector(NoAccountState, ScoreThenLearn):
    name = "takeover"
    version = "1"

    def __init__(
        self, start: float = 2.0, full: float = 6.0, share: float = 0.5, top: float = 0.85
    ) -> None:
        self.start, self.full, self.share, self.top = start, full, share, top

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "full": self.full, "share": self.share, "top": self.top}

    def score(self, batch: FeatureBatch) -> np.ndarray:
        overlap = fill_nan(batch.col("new_country_overlap"))
        share = fill_nan(batch.col("new_country_share"))
        ramp = np.clip((overlap - self.start) / (self.full - self.start), 0.0, 1.0)
        return ramp * (share >= self.share) * self.top

    def learn(self, batch: FeatureBatch) -> None:
        return None

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        if self.score(batch.take(np.array([i])))[0] <= 0:
            return Explanation(None, [])
        v = float(fill_nan(batch.col("new_country_overlap"))[i])
        share = float(fill_nan(batch.col("new_country_share"))[i])
        text = (
            f"a country new to this account was used beside its usual countries in {v:.0f} "
            "windows within a day (usually never)"
        )
        text2 = f"{share:.0%} of recent requests come from that new country (usually 0%)"
        return Explanation(
            "key_leak",
            [
                Reason("new_country_overlap", v, 0.0, text),
                Reason("new_country_share", share, 0.0, text2),
            ],
        )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
