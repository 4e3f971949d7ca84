"""How sure and how bad: the fused score and severity of an alert.

Severity must rank alerts, so `critical` is kept for what is both most certain and most
harmful. Certainty comes from the kind of evidence, not from one model's confidence:

- evidence detectors (rules, campaigns) name a concrete behaviour and may reach any level;
- the classifier on its own, or the two unsupervised detectors agreeing, say "this looks
  like X" and are capped below `high`, however confident: their confidence was learned on
  other traffic (see the classifier's out-of-distribution guard);
- one evidence detector alone reaches at most `high`; `critical` takes a second, independent
  detector agreeing, so each further detector that agrees adds a little.

Harm depends on the category: a leaked key or stuffed credentials cost a customer money
and data; probing or an unexplained anomaly costs little until it turns into something.
"""

from __future__ import annotations

import numpy as np

from streams.core.config import FusionConfig

EVIDENCE = ("rules", "campaign", "takeover")
STATISTICAL = ("classifier",)
UNSUPERVISED = ("baseline", "population")
# Below the default `high` threshold (0.8): a statistical opinion alone is at most medium.
STATISTICAL_CAP = 0.79
EVIDENCE_ALONE_CAP = 0.9
AGREE_BONUS = 0.05
HARM = {
    "key_leak": 1.0,
    "credential_stuffing": 1.0,
    "distillation": 0.85,
    "spam_campaign": 0.85,
    "free_tier_farming": 0.75,
    "jailbreak_probing": 0.7,
    "anomaly": 0.5,
}


def fuse_scores(
    scores: dict[str, np.ndarray], n: int, enough: np.ndarray | None = None
) -> np.ndarray:
    """Certainty per row, before the category is known.

    `enough` marks rows with enough requests for the statistical detectors to speak: one
    content-filtered request out of two is a rate of 50% and means nothing.
    """
    enough = np.ones(n, dtype=bool) if enough is None else enough
    evidence = np.zeros(n)
    for name in EVIDENCE:
        if name in scores:
            evidence = np.maximum(evidence, scores[name])
    opinion = np.zeros(n)
    for name in STATISTICAL:
        if name in scores:
            opinion = np.maximum(opinion, np.where(enough, scores[name], 0.0))
    if all(name in scores for name in UNSUPERVISED):
        agree = np.minimum(scores["baseline"], scores["population"]) * 0.9
        opinion = np.maximum(opinion, np.where(enough, agree, 0.0))
    return np.maximum(evidence, np.minimum(opinion, STATISTICAL_CAP))


def certainty(fused: float, det_scores: dict[str, float], threshold: float) -> float:
    """Agreement raises certainty, but only evidence lifts it past the statistical cap."""
    agreeing = sum(1 for v in det_scores.values() if v >= threshold)
    sure = min(1.0, min(fused, EVIDENCE_ALONE_CAP) + AGREE_BONUS * max(agreeing - 1, 0))
    if max((det_scores.get(k, 0.0) for k in EVIDENCE), default=0.0) < threshold:
        sure = min(sure, STATISTICAL_CAP)
    return sure


def graded(sure: float, category: str) -> float:
    """The alert's score: certainty scaled by the category's harm (0.8x to 1x)."""
    return round(sure * (0.8 + 0.2 * HARM.get(category, 0.5)), 4)


def severity_of(score: float, cfg: FusionConfig) -> str:
    medium, high, critical = cfg.severity_thresholds
    if score >= critical:
        return "critical"
    if score >= high:
        return "high"
    if score >= medium:
        return "medium"
    return "low"
