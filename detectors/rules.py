"""Rules declared in config: quotas, rate ceilings, auth-failure bursts."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from detectors.base import Explanation, NoAccountState, ScoreThenLearn
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch, fill_nan
from streams.core.config import DEFAULT_RULES, RuleConfig
from streams.features.window import FEATURES

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class RulesDetector(NoAccountState, ScoreThenLearn):
    name = "rules"
    version = "1"

    def __init__(self, rules: tuple[RuleConfig, ...] = DEFAULT_RULES) -> None:
        for r in rules:
            # A feature the windows do not compute reads as missing: the rule would never
            # fire, and nothing would say so.
            if r.feature not in FEATURES:
                raise ValueError(
                    f"rules.{r.name}.feature: {r.feature!r} is not a feature; known: "
                    f"{', '.join(FEATURES)}"
                )
        self.rules = tuple(rules)

    def params(self) -> dict[str, Any]:
        return {"rules": self.rules}

    def _fired(self, batch: FeatureBatch) -> np.ndarray:
        """(n_rows, n_rules) bool: which rules fire on which rows."""
        out = np.zeros((len(batch), len(self.rules)), dtype=bool)
        for j, r in enumerate(self.rules):
            v = batch.col(r.feature)
            hit = OPS[r.op](fill_nan(v, nan=-np.inf if r.op[0] == ">" else np.inf), r.threshold)
            if r.plans:
                hit &= np.isin(batch.plans, r.plans)
            out[:, j] = hit
        return out

    def score(self, batch: FeatureBatch) -> np.ndarray:
        if not self.rules:
            return np.zeros(len(batch))
        weights = np.array([r.score for r in self.rules])
        return (self._fired(batch) * weights).max(axis=1)

    def learn(self, batch: FeatureBatch) -> None:
        return None

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        fired = self._fired(batch.take(np.array([i])))[0]
        reasons, category, best = [], None, 0.0
        for r, hit in zip(self.rules, fired, strict=True):
            if not hit:
                continue
            value = float(batch.col(r.feature)[i])
            text = (r.text or "{feature} {op} {threshold}").format(
                value=value, threshold=r.threshold, feature=r.feature, op=r.op
            )
            reasons.append(Reason(r.feature, value, r.threshold, f"rule {r.name}: {text}"))
            if r.score > best and r.category != "anomaly":
                best, category = r.score, r.category
        return Explanation(category, reasons)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
