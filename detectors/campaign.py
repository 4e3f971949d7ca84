"""Campaigns: groups of related accounts that also misbehave.

A shared /24, client or prompt only makes accounts *related*: an organisation onboarding a
team behind one NAT, a classroom or a hackathon all look like that. A campaign alert needs
misuse behaviour inside the group as well, and names both the tie and the behaviour:

- auth failing for one IP across many accounts (credential stuffing);
- the same few prompts sent over and over by several accounts, or content that moderation
  scores high (spam);
- new free accounts on shared infrastructure that each burn most of the daily allowance or
  run into the rate limit (free-tier farming, including rings that stay under the quota).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.base import Explanation, NoAccountState, ScoreThenLearn
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan

YOUNG_DAYS = 2.0  # an account younger than this counts as new (free-tier farming)


def _ramp(x: np.ndarray, start: float, full: float) -> np.ndarray:
    """0 up to `start`, rising linearly to 1 at `full`."""
    return np.clip((fill_nan(x) - start) / (full - start), 0.0, 1.0)


def _group(count: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """0 below `lo` accounts, rising to 1 at `hi` accounts."""
    return np.clip((fill_nan(count) - lo + 1) / (hi - lo + 1), 0.0, 1.0)


class CampaignDetector(NoAccountState, ScoreThenLearn):
    name = "campaign"
    version = "2"

    def __init__(
        self,
        min_group: int = 3,
        full_group: int = 6,
        free_daily_tokens: float = 250_000,
        young_days: float = YOUNG_DAYS,
    ) -> None:
        self.min_group, self.full_group = min_group, full_group
        self.young_days = young_days
        self.free_daily_tokens = free_daily_tokens

    def params(self) -> dict[str, Any]:
        return {
            "min_group": self.min_group,
            "full_group": self.full_group,
            "free_daily_tokens": self.free_daily_tokens,
            "young_days": self.young_days,
        }

    def behaviours(self, batch: FeatureBatch) -> dict[str, np.ndarray]:
        """Misuse behaviour of each row's own account, each in [0, 1]."""
        req = fill_nan(batch.col("requests"))
        free = fill_nan(batch.col("is_free_plan")) > 0
        quota = fill_nan(batch.col("day_tokens")) / self.free_daily_tokens
        return {
            # Most of a day's free allowance, from an account that has no other history.
            "day_tokens": _ramp(quota, 0.45, 0.6)
            * free
            * (fill_nan(batch.col("models_seen")) <= 1),
            "rate_limited_rate": _ramp(batch.col("rate_limited_rate"), 0.02, 0.05) * (req >= 10),
            "moderation_mean": np.maximum(
                _ramp(batch.col("moderation_mean"), 0.1, 0.2),
                _ramp(batch.col("flagged_rate"), 0.1, 0.25),
            )
            * (req >= 5),
            # One account cycling through a handful of prompts: a templated app does this
            # too, so it only counts together with the same prompts across accounts.
            "prompt_repeat_rate": _ramp(batch.col("prompt_repeat_rate"), 0.7, 0.85) * (req >= 10),
        }

    def _parts(self, batch: FeatureBatch) -> dict[str, np.ndarray]:
        lo, hi = self.min_group, self.full_group
        b = self.behaviours(batch)
        young = fill_nan(batch.col("account_age_days"), nan=np.inf) < self.young_days
        free = fill_nan(batch.col("is_free_plan")) > 0
        shared_prompt = _group(batch.col("prompt_shared_accounts"), lo, hi)
        new_infra = np.maximum(
            _group(batch.col("subnet_new_accounts"), lo, hi),
            _group(batch.col("ua_new_accounts"), lo, hi),
        )
        fails = fill_nan(batch.col("auth_fail_rate"))
        # Misuse inside the group, not only in this account: several members misbehave.
        group = _group(batch.col("group_misuse_accounts"), lo, lo)
        spam_content = np.maximum(b["moderation_mean"], b["prompt_repeat_rate"] * shared_prompt)
        farming = np.maximum(b["day_tokens"], b["rate_limited_rate"])
        return {
            "credential_stuffing": _group(batch.col("ip_auth_fail_accounts"), lo, hi)
            * (fails >= 0.3),
            "spam_campaign": np.maximum(shared_prompt, new_infra * young) * spam_content * group,
            "free_tier_farming": new_infra * young * free * farming * group * 0.95,
        }

    def score(self, batch: FeatureBatch) -> np.ndarray:
        return np.max(np.stack(list(self._parts(batch).values()), axis=1), axis=1)

    def learn(self, batch: FeatureBatch) -> None:
        return None

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        one = batch.take(np.array([i]))
        parts = {k: float(v[0]) for k, v in self._parts(one).items()}
        kind = max(parts, key=parts.__getitem__)
        if parts[kind] <= 0:
            return Explanation(None, [])
        reasons = []
        ev = batch.context.get("campaign", [None] * len(batch))[i]
        if ev:
            text = ev["text"] + " (accounts are usually alone on it)"
            reasons.append(Reason(ev["signal"], float(ev["count"]), 1.0, text))
        if kind != "credential_stuffing":
            k = float(fill_nan(one.col("group_misuse_accounts"))[0])
            text = f"{k:.0f} accounts of that group show misuse behaviour themselves (usually none)"
            reasons.append(Reason("group_misuse_accounts", k, 0.0, text))
        reasons += self._behaviour_reasons(one, kind)
        return Explanation(kind, reasons)

    def _behaviour_reasons(self, one: FeatureBatch, kind: str) -> list[Reason]:
        b = {k: float(v[0]) for k, v in self.behaviours(one).items()}
        v = {k: float(fill_nan(one.col(k))[0]) for k in b}
        out = []
        if kind == "credential_stuffing":
            rate = float(fill_nan(one.col("auth_fail_rate"))[0])
            out.append(
                Reason("auth_fail_rate", rate, 0.0, f"{rate:.0%} of requests failed auth (401)")
            )
        if b["day_tokens"] > 0:
            share = v["day_tokens"] / self.free_daily_tokens
            out.append(
                Reason(
                    "day_tokens",
                    v["day_tokens"],
                    self.free_daily_tokens,
                    f"a new free account used ~{v['day_tokens']:,.0f} tokens in about a day, "
                    f"{share:.0%} of the free daily allowance of {self.free_daily_tokens:,.0f}, "
                    "all on one model",
                )
            )
        if b["rate_limited_rate"] > 0:
            text = f"{v['rate_limited_rate']:.0%} of requests rate-limited (429) vs ~0% usual"
            out.append(Reason("rate_limited_rate", v["rate_limited_rate"], 0.0, text))
        if b["moderation_mean"] > 0:
            text = f"mean moderation score {v['moderation_mean']:.2f} vs ~0.02 usual"
            out.append(Reason("moderation_mean", v["moderation_mean"], 0.02, text))
        if b["prompt_repeat_rate"] > 0 and kind == "spam_campaign":
            text = f"{v['prompt_repeat_rate']:.0%} of prompts are repeats of the shared ones"
            out.append(Reason("prompt_repeat_rate", v["prompt_repeat_rate"], 0.0, text))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
