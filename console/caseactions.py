"""What analysts do to cases, and to many cases or alerts at once.

A case action is carried out on each of the case's alerts, and each alert gets its own
audit row (who, what, when), in the same transaction as the change; the case gets one more
row saying what was done to it. Bulk actions are the same actions over many cases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update

from console import casestate, casework, triage
from console.schema import CASE_STATUSES, alerts, cases, notes
from console.store import AlertStore

BULK_ACTIONS = ("verdict", "assign", "snooze", "close", "status")
MAX_BULK = 10_000


@dataclass(frozen=True)
class BulkRequest:
    action: str
    verdict: triage.Verdict | None = None
    assignee: str | None = None
    status: str = ""
    snooze_days: int = 0
    snooze_reason: str = ""
    # Detectors to snooze; empty means those that contributed to each alert.
    snooze_detectors: tuple[str, ...] = ()


@dataclass
class BulkResult:
    cases: list[int] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    snoozes: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cases": self.cases,
            "alerts": len(self.alerts),
            "alert_ids": self.alerts,
            "labels": len(self.labels),
            "snoozes": self.snoozes,
        }


def _case(conn: Connection, case_id: int) -> Any:
    row = conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
    if row is None or row.status == "merged":
        raise triage.NotFound(f"no case {case_id}")
    return row


def _case_alerts(conn: Connection, case_id: int) -> list[Any]:
    """The alerts an action on the case covers: those not yet resolved, or all if none is."""
    rows = conn.execute(
        select(alerts).where(alerts.c.case_id == case_id).order_by(alerts.c.ts_epoch)
    ).all()
    open_rows = [r for r in rows if r.status != "resolved"]
    return open_rows or rows


def _verdict_case(
    conn: Connection, actor: str, case_id: int, v: triage.Verdict, out: BulkResult
) -> None:
    now = time.time()
    rows = _case_alerts(conn, case_id)
    for r in rows:
        # Snooze the chosen detectors where this alert has them.
        names = {d for d in v.snooze_detectors}
        own = triage.Verdict(
            v.verdict,
            v.category,
            v.note,
            tuple(sorted(names & _alert_detector_names(r))),
            v.snooze_days,
            v.snooze_reason,
        )
        label = triage.verdict_on(conn, r, actor, own, now)
        out.labels.append(label)
        out.snoozes += label["snoozes"]
        out.alerts.append(r.alert_id)
    status = "waiting" if v.verdict == "needs_info" else "closed"
    casework.refresh(conn, {case_id})
    casestate.set_case(
        conn,
        actor,
        case_id,
        {
            "what": "verdict",
            "verdict": v.verdict,
            "category": v.category,
            "note": v.note,
            "alerts": len(rows),
            "status": status,
        },
        status=status,
        verdict=v.verdict,
        category=v.category if v.verdict == "misuse" else None,
    )


def _alert_detector_names(row: Any) -> set[str]:
    import json

    return {str(d["name"]) for d in json.loads(row.payload).get("detectors", [])}


def _assign_case(
    conn: Connection, actor: str, case_id: int, who: str | None, out: BulkResult
) -> None:
    before = _case(conn, case_id).assignee
    for r in _case_alerts(conn, case_id):
        conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == r.alert_id)
            .values(assignee=who, updated_at=time.time())
        )
        triage.audit(
            conn, actor, "assign", r.alert_id, {"from": r.assignee, "to": who, "case_id": case_id}
        )
        out.alerts.append(r.alert_id)
    values: dict[str, Any] = {"assignee": who}
    row = _case(conn, case_id)
    if who and row.status == "open":
        values["status"] = "in_review"  # someone picked it up
    casestate.set_case(
        conn, actor, case_id, {"what": "assign", "from": before, "to": who}, **values
    )


def _status_case(conn: Connection, actor: str, case_id: int, status: str, out: BulkResult) -> None:
    if status not in CASE_STATUSES:
        raise triage.TriageError(f"case status must be one of {', '.join(CASE_STATUSES)}")
    row = _case(conn, case_id)
    if status == "closed":
        # Closing without a verdict resolves the alerts; they keep whatever verdict they had.
        for r in _case_alerts(conn, case_id):
            if r.status == "resolved":
                continue
            conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == r.alert_id)
                .values(status="resolved", updated_at=time.time())
            )
            triage.audit(
                conn,
                actor,
                "status",
                r.alert_id,
                {"from": r.status, "to": "resolved", "case_id": case_id},
            )
            out.alerts.append(r.alert_id)
        casework.refresh(conn, {case_id})
    casestate.set_case(
        conn, actor, case_id, {"what": "status", "from": row.status, "to": status}, status=status
    )


def _snooze_case(
    conn: Connection, actor: str, case_id: int, req: BulkRequest, out: BulkResult, th: Any
) -> None:
    import json

    now = time.time()
    done: set[tuple[str, str]] = set()
    for r in _case_alerts(conn, case_id):
        payload = json.loads(r.payload)
        names = set(req.snooze_detectors) or {d["name"] for d in th.contributed(payload)}
        for det in sorted(names & _alert_detector_names(r)):
            key = (r.account_id, det)
            if key not in done:
                done.add(key)
                out.snoozes.append(
                    triage.add_snooze(
                        conn,
                        actor,
                        r.account_id,
                        det,
                        req.snooze_days,
                        req.snooze_reason,
                        now,
                        r.alert_id,
                    )
                )
            triage.audit(
                conn,
                actor,
                "snooze_alert",
                r.alert_id,
                {
                    "detector": det,
                    "days": req.snooze_days,
                    "reason": req.snooze_reason,
                    "case_id": case_id,
                },
            )
        out.alerts.append(r.alert_id)
    casestate.set_case(
        conn, actor, case_id, {"what": "snooze", "snoozes": sorted(f"{a}/{d}" for a, d in done)}
    )


def check(req: BulkRequest) -> None:
    if req.action not in BULK_ACTIONS:
        raise triage.TriageError(f"action must be one of {', '.join(BULK_ACTIONS)}")
    if req.action == "verdict":
        if req.verdict is None:
            raise triage.TriageError("choose a verdict")
        triage.check_verdict(req.verdict)
    if req.action == "snooze":
        if not 1 <= req.snooze_days <= triage.MAX_SNOOZE_DAYS:
            raise triage.TriageError(f"snooze period must be 1 to {triage.MAX_SNOOZE_DAYS} days")
        if not req.snooze_reason.strip():
            raise triage.TriageError("a snooze needs a reason")
    if req.action == "status" and req.status not in CASE_STATUSES:
        raise triage.TriageError(f"case status must be one of {', '.join(CASE_STATUSES)}")


def _selection(ids: list, what: str) -> None:
    if not ids:
        raise triage.TriageError(f"select at least one {what}")
    if len(ids) > MAX_BULK:
        raise triage.TriageError(f"at most {MAX_BULK} {what}s at once")


def on_cases(
    store: AlertStore, actor: str, case_ids: list[int], req: BulkRequest, th: Any
) -> BulkResult:
    """One action on every given case, all or nothing, audited per alert."""
    check(req)
    _selection(case_ids, "case")
    out = BulkResult()
    with store.engine.begin() as conn:
        for cid in dict.fromkeys(case_ids):
            _case(conn, cid)
            if req.action == "verdict":
                assert req.verdict is not None
                _verdict_case(conn, actor, cid, req.verdict, out)
            elif req.action == "assign":
                _assign_case(conn, actor, cid, req.assignee, out)
            elif req.action == "snooze":
                _snooze_case(conn, actor, cid, req, out, th)
            elif req.action == "close":
                _status_case(conn, actor, cid, "closed", out)
            else:
                _status_case(conn, actor, cid, req.status, out)
            out.cases.append(cid)
    return out


def on_alerts(
    store: AlertStore, actor: str, alert_ids: list[str], req: BulkRequest, th: Any
) -> BulkResult:
    """One action on chosen alerts (of any cases); their cases follow (closed when empty)."""
    import json

    check(req)
    _selection(alert_ids, "alert")
    out = BulkResult()
    now = time.time()
    touched: set[int] = set()
    with store.engine.begin() as conn:
        for aid in dict.fromkeys(alert_ids):
            r = conn.execute(select(alerts).where(alerts.c.alert_id == aid)).first()
            if r is None:
                raise triage.NotFound(f"no alert {aid!r}")
            if req.action == "verdict":
                assert req.verdict is not None
                v = req.verdict
                own = triage.Verdict(
                    v.verdict,
                    v.category,
                    v.note,
                    tuple(sorted(set(v.snooze_detectors) & _alert_detector_names(r))),
                    v.snooze_days,
                    v.snooze_reason,
                )
                label = triage.verdict_on(conn, r, actor, own, now)
                out.labels.append(label)
                out.snoozes += label["snoozes"]
            elif req.action == "assign":
                conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == aid)
                    .values(assignee=req.assignee, updated_at=now)
                )
                triage.audit(conn, actor, "assign", aid, {"from": r.assignee, "to": req.assignee})
            elif req.action == "snooze":
                names = set(req.snooze_detectors) or {
                    d["name"] for d in th.contributed(json.loads(r.payload))
                }
                for det in sorted(names & _alert_detector_names(r)):
                    out.snoozes.append(
                        triage.add_snooze(
                            conn,
                            actor,
                            r.account_id,
                            det,
                            req.snooze_days,
                            req.snooze_reason,
                            now,
                            aid,
                        )
                    )
            else:
                status = "resolved" if req.action == "close" else req.status
                if status not in ("open", "acknowledged", "resolved"):
                    raise triage.TriageError("alert status must be open, acknowledged or resolved")
                conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == aid)
                    .values(status=status, updated_at=now)
                )
                triage.audit(conn, actor, "status", aid, {"from": r.status, "to": status})
            out.alerts.append(aid)
            if r.case_id is not None:
                touched.add(r.case_id)
        for cid in sorted(touched):
            casestate.after_alert_change(conn, cid, actor)
        out.cases = sorted(touched)
    return out


def add_case_note(store: AlertStore, case_id: int, actor: str, text: str) -> int:
    text = text.strip()
    if not text:
        raise triage.TriageError("a note needs text")
    if len(text) > triage.MAX_NOTE_CHARS:
        raise triage.TriageError(f"note is longer than {triage.MAX_NOTE_CHARS} characters")
    with store.engine.begin() as conn:
        _case(conn, case_id)
        first = conn.execute(select(alerts.c.account_id).where(alerts.c.case_id == case_id)).first()
        note_id = conn.execute(
            insert(notes).values(
                account_id=first[0] if first else "",
                alert_id=None,
                case_id=case_id,
                author=actor,
                text=text,
                created_at=time.time(),
            )
        ).inserted_primary_key[0]
        triage.audit(
            conn, actor, "note", f"case:{case_id}", {"note_id": int(note_id), "text": text}
        )
    return int(note_id)
