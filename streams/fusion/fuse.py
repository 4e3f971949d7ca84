"""Fusion: detector scores -> alerts with a severity, a category and readable reasons.

The classifier, the rules and the campaign detector can each raise an alert alone. The
two unsupervised detectors (the account's own baseline and the population model) raise
an "anomaly" alert only when both agree, since either alone fires on benign bursts. An
ongoing incident alerts once per cooldown unless it gets worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from detectors.base import Detector
from detectors.gate import GATE_NAME
from streams.core.alerts import SEVERITIES, Alert, DetectorScore, Reason, rfc3339
from streams.core.batch import FeatureBatch
from streams.core.config import FusionConfig
from streams.fusion.cooldowns import Cooldowns
from streams.fusion.grading import certainty, fuse_scores, graded, severity_of

SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class FusionResult:
    alerts: list[Alert]
    suppressed: dict[str, int]


def alert_id(account_id: str, window_end: float, category: str) -> str:
    h = blake2b(f"{account_id}|{window_end:.0f}|{category}".encode(), digest_size=12)
    return h.hexdigest()


def fuse(
    batch: FeatureBatch,
    scores: dict[str, np.ndarray],
    detectors: dict[str, Detector],
    cooldowns: Cooldowns,
    cfg: FusionConfig,
    model_version: str,
    snoozed: dict[tuple[str, str], float] | None = None,
) -> FusionResult:
    n = len(batch)
    suppressed = {"cooldown": 0, "snooze": 0, "no_reason": 0, GATE_NAME: 0}
    if snoozed:
        scores = {k: v.copy() for k, v in scores.items()}
        for i, acct in enumerate(batch.account_ids.tolist()):
            for name in scores:
                until = snoozed.get((acct, name))
                if until is not None and until > batch.window_end[i]:
                    if scores[name][i] >= cfg.alert_threshold:
                        suppressed["snooze"] += 1
                    scores[name][i] = 0.0
    fused = fuse_scores(scores, n, batch.col("requests") >= cfg.min_requests)
    alerts: list[Alert] = []
    # Candidates at the lowest threshold of any category; each is held to its own
    # category's threshold once explained (fusion.thresholds).
    rows = np.flatnonzero(fused >= cfg.floor())
    gate_p: dict[int, float] = {}
    gate = getattr(detectors.get("classifier"), "gate", None)
    if gate is not None and len(rows):
        # A model trained on verdicts may veto what looks like the false alarms analysts
        # marked; what it lets through carries its probability, so the check is visible.
        judged = gate.judge(batch, scores, rows)
        if judged is not None:
            p, keep = judged
            suppressed[GATE_NAME] += int((~keep).sum())
            gate_p = dict(zip(rows[keep].tolist(), p[keep].tolist(), strict=True))
            rows = rows[keep]
    for i in rows.tolist():
        account = int(batch.accounts[i])
        ts = float(batch.window_end[i])
        det_scores = {k: float(v[i]) for k, v in scores.items()}
        sure = certainty(float(fused[i]), det_scores, cfg.alert_threshold)
        # The most harmful category bounds the severity from above before explaining.
        top = SEV_RANK[severity_of(graded(sure, "key_leak"), cfg)]
        if cooldowns.suppresses(account, ts, top, cfg.cooldown_s):
            suppressed["cooldown"] += 1
            continue
        # Only now: an ongoing incident re-scores every window, and explaining is costly.
        category, reasons, related = _explain(batch, i, det_scores, detectors)
        if not reasons:  # nothing a person could check: no alert
            suppressed["no_reason"] += 1
            continue
        score = graded(sure, category)
        sev = severity_of(score, cfg)
        if not passes(float(fused[i]), category, sev, cfg):
            continue
        if cooldowns.suppresses(account, ts, SEV_RANK[sev], cfg.cooldown_s):
            suppressed["cooldown"] += 1
            continue
        cooldowns.record(account, ts, SEV_RANK[sev])
        acct = str(batch.account_ids[i])
        alerts.append(
            Alert(
                alert_id=alert_id(acct, ts, category),
                account_id=acct,
                ts=rfc3339(ts),
                severity=sev,  # type: ignore[arg-type]
                score=score,
                category=category,
                detectors=[
                    DetectorScore(k, round(v, 4))
                    for k, v in sorted(det_scores.items(), key=lambda kv: -kv[1])
                ]
                + ([DetectorScore(GATE_NAME, round(gate_p[i], 4))] if i in gate_p else []),
                reasons=reasons,
                window={"start": rfc3339(batch.window_start[i]), "end": rfc3339(ts)},
                model_version=model_version,
                related_accounts=[a for a in related if a != acct],
            )
        )
    return FusionResult(alerts, suppressed)


def passes(fused: float, category: str, severity: str, cfg: FusionConfig) -> bool:
    """Whether a candidate of this category and severity meets its category's threshold
    and severity floor (fusion.thresholds, fusion.min_severity)."""
    floor = cfg.min_severity.get(category)
    if floor is not None and SEV_RANK[severity] < SEV_RANK[floor]:
        return False
    return fused >= cfg.threshold_of(category)


def _explain(
    batch: FeatureBatch, i: int, det_scores: dict[str, float], detectors: dict[str, Detector]
) -> tuple[str, list[Reason], list[str]]:
    category = None
    reasons: list[Reason] = []
    seen: set[str] = set()
    for name, s in sorted(det_scores.items(), key=lambda kv: -kv[1]):
        if s < 0.3 or name not in detectors:
            continue
        ex = detectors[name].explain(batch, i)
        if category is None and ex.category:
            category = ex.category
        for r in ex.reasons:
            if r.feature not in seen:
                seen.add(r.feature)
                reasons.append(r)
    ev = batch.context.get("campaign", [None] * len(batch))[i]
    related = list(ev["accounts"]) if ev else []
    return category or "anomaly", reasons[:6], related
