"""Campaigns: groups of accounts tied by a /24, a client, a prompt or a failing IP.

A group only counts when the behaviour fits too: fresh accounts on one block, the same
spam prompt across accounts, or auth failing for one IP across many accounts. Which tie
and which behaviour dominate decide the category.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.base import Explanation, ScoreThenLearn
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan


def _ramp(count: np.ndarray, start: float, full: float) -> np.ndarray:
    """0 below `start` accounts, rising to 1 at `full` accounts."""
    return np.clip((fill_nan(count) - start + 1) / (full - start + 1), 0.0, 1.0)


class CampaignDetector(ScoreThenLearn):
    name = "campaign"
    version = "1"

    def __init__(self, min_group: int = 3, full_group: int = 6) -> None:
        self.min_group, self.full_group = min_group, full_group

    def params(self) -> dict[str, Any]:
        return {"min_group": self.min_group, "full_group": self.full_group}

    def _parts(self, batch: FeatureBatch) -> dict[str, np.ndarray]:
        lo, hi = self.min_group, self.full_group
        young = batch.col("account_age_days") < 2.0
        fails = fill_nan(batch.col("auth_fail_rate"))
        mod = fill_nan(batch.col("moderation_mean"))
        return {
            "credential_stuffing": _ramp(batch.col("ip_auth_fail_accounts"), lo, hi)
            * (fails >= 0.3),
            "spam_campaign": _ramp(batch.col("prompt_shared_accounts"), lo, hi) * (mod >= 0.15),
            "free_tier_farming": _ramp(batch.col("subnet_new_accounts"), lo, hi)
            * young
            * (fill_nan(batch.col("tokens_per_request")) >= 1000),
            "campaign": _ramp(batch.col("subnet_new_accounts"), lo, hi)
            * _ramp(batch.col("ua_new_accounts"), lo, hi)
            * young
            * 0.7,
        }

    def score(self, batch: FeatureBatch) -> np.ndarray:
        return np.max(np.stack(list(self._parts(batch).values()), axis=1), axis=1)

    def learn(self, batch: FeatureBatch) -> None:
        return None

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        parts = {k: float(v[i]) for k, v in self._parts(batch).items()}
        kind = max(parts, key=parts.__getitem__)
        if parts[kind] <= 0:
            return Explanation(None, [])
        ev = batch.context.get("campaign", [None] * len(batch))[i]
        reasons = []
        if ev:
            reasons.append(Reason(ev["signal"], float(ev["count"]), None, ev["text"]))
        category = None if kind == "campaign" else kind
        return Explanation(category, reasons)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
