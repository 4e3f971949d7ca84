"""What analysts do to alerts: verdicts, status, assignment, notes and snoozes.

Every action writes an audit row (who, what, when) in the same transaction as the change,
so the audit log can never miss an action that took effect.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from console import casestate
from console.audit import audit
from console.schema import STATUSES, VERDICTS, alerts, labels, notes, snoozes
from console.store import AlertStore

MAX_SNOOZE_DAYS = 180
MAX_NOTE_CHARS = 10_000


class TriageError(ValueError):
    """The request is not allowed; the message says why."""


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Verdict:
    verdict: str
    category: str | None = None
    note: str = ""
    snooze_detectors: tuple[str, ...] = ()
    snooze_days: int = 0
    snooze_reason: str = ""


def _alert(conn: Connection, alert_id: str) -> Any:
    row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id!r}")
    return row


def check_verdict(v: Verdict) -> None:
    if v.verdict not in VERDICTS:
        raise TriageError(f"verdict must be one of {', '.join(VERDICTS)}")
    if v.verdict == "misuse" and not v.category:
        raise TriageError("confirming misuse needs a category")
    if len(v.note) > MAX_NOTE_CHARS:
        raise TriageError(f"note is longer than {MAX_NOTE_CHARS} characters")
    if v.snooze_detectors and v.verdict != "false_positive":
        raise TriageError("detectors can be snoozed only with a false-positive verdict")
    if v.snooze_detectors and not 1 <= v.snooze_days <= MAX_SNOOZE_DAYS:
        raise TriageError(f"snooze period must be 1 to {MAX_SNOOZE_DAYS} days")
    if v.snooze_detectors and not v.snooze_reason.strip():
        raise TriageError("a snooze needs a reason")


def record_verdict(store: AlertStore, alert_id: str, actor: str, v: Verdict) -> dict:
    """Label an alert; returns the label as published for retraining."""
    check_verdict(v)
    with store.engine.begin() as conn:
        row = _alert(conn, alert_id)
        label = verdict_on(conn, row, actor, v, time.time())
        casestate.after_alert_change(conn, row.case_id, actor)
    return label


def verdict_on(conn: Connection, row: Any, actor: str, v: Verdict, now: float) -> dict:
    """One alert's verdict inside the caller's transaction: label, status, audit, snoozes."""
    alert_id = row.alert_id
    payload = json.loads(row.payload)
    known = {d["name"] for d in payload.get("detectors", [])}
    unknown = sorted(set(v.snooze_detectors) - known)
    if unknown:
        raise TriageError(f"alert has no detector(s) {', '.join(unknown)}")
    category = v.category if v.verdict == "misuse" else None
    label_id = conn.execute(
        insert(labels).values(
            alert_id=alert_id,
            account_id=row.account_id,
            verdict=v.verdict,
            category=category,
            note=v.note,
            analyst=actor,
            created_at=now,
        )
    ).inserted_primary_key[0]
    # A verdict closes the case unless the analyst asked for more information.
    status = "acknowledged" if v.verdict == "needs_info" else "resolved"
    conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert_id)
        .values(verdict=v.verdict, status=status, updated_at=now)
    )
    audit(
        conn,
        actor,
        "verdict",
        alert_id,
        {"verdict": v.verdict, "category": category, "note": v.note, "status": status},
    )
    snoozed = [
        add_snooze(conn, actor, row.account_id, det, v.snooze_days, v.snooze_reason, now, alert_id)
        for det in v.snooze_detectors
    ]
    return {
        "label_id": int(label_id),
        "alert_id": alert_id,
        "account_id": row.account_id,
        "verdict": v.verdict,
        "category": category,
        "alert_category": row.category,
        "detectors": payload.get("detectors", []),
        "window": payload.get("window", {}),
        "model_version": payload.get("model_version", ""),
        "note": v.note,
        "analyst": actor,
        "ts": now,
        "snoozes": snoozed,
    }


def add_snooze(
    conn: Connection,
    actor: str,
    account_id: str,
    detector: str,
    days: int,
    reason: str,
    now: float,
    alert_id: str | None = None,
) -> dict:
    """Store and audit one snooze; returns it as published to the workers."""
    until = now + days * 86_400
    snooze_id = conn.execute(
        insert(snoozes).values(
            account_id=account_id,
            detector=detector,
            until_epoch=until,
            reason=reason,
            created_by=actor,
            created_at=now,
        )
    ).inserted_primary_key[0]
    detail = {"detector": detector, "days": days, "until_epoch": until, "reason": reason}
    if alert_id is not None:
        detail["alert_id"] = alert_id
    detail["snooze_id"] = int(snooze_id)
    audit(conn, actor, "snooze", account_id, detail)
    return {"account_id": account_id, "detector": detector, "until_epoch": until, "reason": reason}


def set_status(store: AlertStore, alert_id: str, actor: str, status: str) -> None:
    if status not in STATUSES:
        raise TriageError(f"status must be one of {', '.join(STATUSES)}")
    with store.engine.begin() as conn:
        row = _alert(conn, alert_id)
        conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert_id)
            .values(status=status, updated_at=time.time())
        )
        audit(conn, actor, "status", alert_id, {"from": row.status, "to": status})
        casestate.after_alert_change(conn, row.case_id, actor)


def assign(store: AlertStore, alert_id: str, actor: str, assignee: str | None) -> None:
    with store.engine.begin() as conn:
        row = _alert(conn, alert_id)
        conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert_id)
            .values(assignee=assignee, updated_at=time.time())
        )
        audit(conn, actor, "assign", alert_id, {"from": row.assignee, "to": assignee})


def add_note(store: AlertStore, alert_id: str, actor: str, text: str) -> int:
    text = text.strip()
    if not text:
        raise TriageError("a note needs text")
    if len(text) > MAX_NOTE_CHARS:
        raise TriageError(f"note is longer than {MAX_NOTE_CHARS} characters")
    with store.engine.begin() as conn:
        row = _alert(conn, alert_id)
        note_id = conn.execute(
            insert(notes).values(
                account_id=row.account_id,
                alert_id=alert_id,
                author=actor,
                text=text,
                created_at=time.time(),
            )
        ).inserted_primary_key[0]
        audit(conn, actor, "note", alert_id, {"note_id": int(note_id), "text": text})
    return int(note_id)
