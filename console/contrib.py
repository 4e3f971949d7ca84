"""Which detectors contributed to an alert: score at or above that detector's own threshold.

Fusion lists every detector on an alert, including those that scored 0. The console shows
and filters only the ones that contributed, by one rule used everywhere: the alert's own
`threshold` for the detector if it sent one, else the console's per-detector threshold,
else the fusion alert threshold (the same `>=` that fusion uses to count agreeing detectors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select

from console.schema import alert_detectors, alerts


@dataclass(frozen=True)
class Thresholds:
    default: float = 0.5
    per_detector: dict[str, float] = field(default_factory=dict)

    def of(self, detector: dict) -> float:
        own = detector.get("threshold")
        if own is not None:
            return float(own)
        return float(self.per_detector.get(str(detector["name"]), self.default))

    def table(self, payload: dict) -> list[dict]:
        """Every detector of an alert with its score, threshold and whether it contributed."""
        rows = []
        for d in payload.get("detectors", []):
            t = self.of(d)
            score = float(d["score"])
            rows.append({"name": d["name"], "score": score, "threshold": t, "over": score >= t})
        return rows

    def contributed(self, payload: dict) -> list[dict]:
        return [r for r in self.table(payload) if r["over"]]

    def sql_threshold(self) -> ColumnElement[Any]:
        """The threshold of each alert_detectors row, as SQL."""
        default: ColumnElement[Any] = literal(self.default)
        if self.per_detector:
            default = case(
                *((alert_detectors.c.detector == n, t) for n, t in self.per_detector.items()),
                else_=self.default,
            )
        return func.coalesce(alert_detectors.c.threshold, default)

    def contributed_clause(self) -> ColumnElement[bool]:
        return alert_detectors.c.score >= self.sql_threshold()

    def alert_has(self, detector: str) -> ColumnElement[bool]:
        """True for alerts to which `detector` contributed (for WHERE on the alerts table)."""
        return exists(
            select(1).where(
                and_(
                    alert_detectors.c.alert_id == alerts.c.alert_id,
                    alert_detectors.c.detector == detector,
                    self.contributed_clause(),
                )
            )
        )


def detector_rows(alert: dict) -> list[dict]:
    """alert_detectors rows for one alert payload (the first entry wins for a repeated name).

    Detectors that scored 0 get no row: thresholds are above 0, so they contributed to
    nothing, and fusion lists every detector on every alert."""
    out: dict[str, dict] = {}
    for d in alert.get("detectors", []):
        name = str(d["name"])
        if name in out or float(d["score"]) <= 0:
            continue
        t = d.get("threshold")
        out[name] = {
            "alert_id": str(alert["alert_id"]),
            "detector": name,
            "score": float(d["score"]),
            "threshold": None if t is None else float(t),
        }
    return list(out.values())
