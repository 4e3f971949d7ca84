"""The analyst backlog: what is waiting for a first verdict, and for how long.

One function reads it (`open_items`), so that when the console groups alerts into cases
the backlog can count cases instead by changing only this module. Age runs from when the
item entered the store (`updated_at`, which only an assignment moves while it is open).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from console.casequeries import DEFAULT_SLA_MINUTES
from console.schema import SEVERITY_RANK, VERDICTS, alerts, labels
from console.store import AlertStore

SEVERITIES = tuple(SEVERITY_RANK)  # low .. critical
# Default time to a first verdict, per severity (seconds): the case queue's SLA
# (`[console] sla_minutes`, or `vigil console --backlog-sla SEVERITY=SECONDS`).
DEFAULT_SLA_S = {k: 60.0 * v for k, v in DEFAULT_SLA_MINUTES.items()}
# Upper bounds of the age groups on the dashboard (seconds), the last one open-ended.
AGE_GROUPS = (("under_15m", 900.0), ("15m_to_1h", 3600.0), ("1h_to_4h", 14400.0))
AGE_OVER = "over_4h"


@dataclass(frozen=True)
class OpenItem:
    severity: str
    age_s: float


def open_items(store: AlertStore, now: float | None = None) -> list[OpenItem]:
    """Every alert still waiting for a verdict, with its severity and age."""
    now = time.time() if now is None else now
    query = select(alerts.c.severity, alerts.c.updated_at).where(alerts.c.status == "open")
    with store.engine.connect() as conn:
        return [OpenItem(sev, max(now - at, 0.0)) for sev, at in conn.execute(query)]


def age_group(age_s: float) -> str:
    for name, bound in AGE_GROUPS:
        if age_s < bound:
            return name
    return AGE_OVER


def summarise(items: Iterable[OpenItem], sla_s: dict[str, float]) -> dict[str, dict]:
    """Per severity: count per age group, oldest age, and how many are past the SLA."""
    groups = [name for name, _ in AGE_GROUPS] + [AGE_OVER]
    out = {s: {"ages": dict.fromkeys(groups, 0), "oldest": 0.0, "over_sla": 0} for s in SEVERITIES}
    for item in items:
        row = out.get(item.severity)
        if row is None:
            continue
        row["ages"][age_group(item.age_s)] += 1
        row["oldest"] = max(row["oldest"], item.age_s)
        row["over_sla"] += item.age_s > sla_s[item.severity]
    return out


def verdict_counts(store: AlertStore) -> dict[str, int]:
    """Verdicts recorded so far; the label log only grows, so this is a counter."""
    query = select(labels.c.verdict, func.count()).group_by(labels.c.verdict)
    with store.engine.connect() as conn:
        found = dict(conn.execute(query).all())
    return {v: int(found.get(v, 0)) for v in VERDICTS}
