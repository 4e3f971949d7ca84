"""Alert candidates recorded once, then held to any thresholds without replaying.

Detector scores do not depend on fusion's settings, so one replay can record every
account-window whose fused score reaches a low floor, with the category and severity
fusion would give it. `alerts_at` then applies per-category thresholds, severity floors
and the cooldown exactly as `fuse` does, which lets `vigil calibrate` try thousands of
threshold sets in the time of one replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detectors.base import Detector
from streams.core.alerts import CATEGORIES
from streams.core.batch import FeatureBatch
from streams.core.config import FusionConfig
from streams.fusion.fuse import SEV_RANK, _explain
from streams.fusion.grading import certainty, fuse_scores, graded, severity_of


@dataclass
class Candidates:
    """One row per recorded account-window, in the order the engine scored them."""

    account: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)  # window end, epoch seconds
    fused: list[float] = field(default_factory=list)
    category: list[int] = field(default_factory=list)  # index into CATEGORIES
    severity: list[int] = field(default_factory=list)  # rank in SEVERITIES

    def __len__(self) -> int:
        return len(self.account)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "account": np.asarray(self.account, dtype=object),
            "ts": np.asarray(self.ts, dtype=float),
            "fused": np.asarray(self.fused, dtype=float),
            "category": np.asarray(self.category, dtype=np.int64),
            "severity": np.asarray(self.severity, dtype=np.int64),
        }


def record(
    out: Candidates,
    batch: FeatureBatch,
    scores: dict[str, np.ndarray],
    detectors: dict[str, Detector],
    cfg: FusionConfig,
    floor: float,
) -> None:
    """Append the rows of one scored window whose fused score reaches `floor` and that
    fusion could explain (a row without reasons never alerts)."""
    fused = fuse_scores(scores, len(batch), batch.col("requests") >= cfg.min_requests)
    for i in np.flatnonzero(fused >= floor).tolist():
        det_scores = {k: float(v[i]) for k, v in scores.items()}
        category, reasons, _ = _explain(batch, i, det_scores, detectors)
        if not reasons:
            continue
        sure = certainty(float(fused[i]), det_scores, cfg.alert_threshold)
        out.account.append(str(batch.account_ids[i]))
        out.ts.append(float(batch.window_end[i]))
        out.fused.append(float(fused[i]))
        out.category.append(CATEGORIES.index(category))
        out.severity.append(SEV_RANK[severity_of(graded(sure, category), cfg)])


def thresholds_vector(cfg: FusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per category index: the fused score needed and the lowest severity rank kept."""
    thr = np.array([cfg.threshold_of(c) for c in CATEGORIES])
    sev = np.array([SEV_RANK[cfg.min_severity.get(c, "low")] for c in CATEGORIES])
    return thr, sev


def alerts_at(
    cand: dict[str, np.ndarray], thr: np.ndarray, min_sev: np.ndarray, cooldown_s: float
) -> np.ndarray:
    """Indexes of the candidates that would alert: above their category's threshold and
    severity floor, and not repeating an alert of the same account within the cooldown at
    the same or a lower severity (streams/fusion/cooldowns.py)."""
    cat = cand["category"]
    ok = (cand["fused"] >= thr[cat]) & (cand["severity"] >= min_sev[cat])
    idx = np.flatnonzero(ok)
    last: dict[str, tuple[float, int]] = {}
    kept = []
    accounts, ts, sev = cand["account"][idx], cand["ts"][idx], cand["severity"][idx]
    for j, a, t, s in zip(idx.tolist(), accounts.tolist(), ts.tolist(), sev.tolist(), strict=True):
        prev = last.get(a)
        if prev is not None and t - prev[0] < cooldown_s and s <= prev[1]:
            continue
        last[a] = (t, s)
        kept.append(j)
    return np.asarray(kept, dtype=np.int64)
