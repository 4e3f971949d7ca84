"""A case's status as its alerts change: reopened, refreshed or closed, each audited."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select, update

from console import casework
from console.audit import audit
from console.schema import ACTIVE_CASE_STATUSES, alerts, cases


def set_case(conn: Connection, actor: str, case_id: int, detail: dict, **values: Any) -> None:
    conn.execute(
        update(cases).where(cases.c.case_id == case_id).values(updated_at=time.time(), **values)
    )
    audit(conn, actor, "case_" + detail.pop("what"), f"case:{case_id}", detail)


def after_alert_change(conn: Connection, case_id: int | None, actor: str) -> None:
    """An action on one alert: keep its case's queue columns true, and close the case when
    its last open alert was resolved (with the latest verdict)."""
    if case_id is None:
        return
    casework.refresh(conn, {case_id})
    row = conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
    if row is not None and row.status == "closed" and row.open_alerts:
        # An alert of a closed case was set back to open: the case is open again.
        reason = f"reopened by {actor}: an alert of the case was set back to open"
        set_case(
            conn,
            actor,
            case_id,
            {"what": "status", "from": "closed", "to": "open", "reason": reason},
            status="open",
            verdict=None,
            reopen_reason=reason,
        )
        return
    if row is None or row.status not in ACTIVE_CASE_STATUSES or row.open_alerts:
        return
    last = conn.execute(
        select(alerts.c.verdict)
        .where(alerts.c.case_id == case_id, alerts.c.verdict.is_not(None))
        .order_by(alerts.c.updated_at.desc())
    ).first()
    verdict = last[0] if last else None
    set_case(
        conn,
        actor,
        case_id,
        {"what": "status", "to": "closed", "verdict": verdict},
        status="closed",
        verdict=verdict,
    )
