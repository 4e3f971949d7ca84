"""Snoozes as objects of their own: list, create for an account and detector, lift.

A snooze mutes one detector for one account until a time. Expiry needs no action: replay
(`AlertStore.active_snoozes`) and the workers (the compacted snoozes topic) both compare
`until_epoch` with the window being scored. Lifting sets `until_epoch` to now and is
published like a new snooze, so the workers' latest value per key ends the mute too.
"""

from __future__ import annotations

import time

from sqlalchemy import desc, select, update

from console import triage
from console.schema import alert_detectors, snoozes
from console.store import AlertStore

MAX_REASON_CHARS = 2_000


def list_snoozes(
    store: AlertStore, now: float | None = None, include_ended: bool = False
) -> list[dict]:
    now = time.time() if now is None else now
    q = select(snoozes).order_by(desc(snoozes.c.id)).limit(1000)
    if not include_ended:
        q = q.where(snoozes.c.until_epoch > now)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["state"] = (
            "lifted" if r["lifted_at"] else ("active" if r["until_epoch"] > now else "expired")
        )
    return rows


def known_detectors(store: AlertStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(alert_detectors.c.detector).distinct()).scalars())


def create(
    store: AlertStore, actor: str, account_id: str, detector: str, days: int, reason: str
) -> dict:
    account_id, detector, reason = account_id.strip(), detector.strip(), reason.strip()
    if not account_id:
        raise triage.TriageError("a snooze needs an account")
    if detector not in known_detectors(store):
        raise triage.TriageError(f"no detector {detector!r} has scored any alert")
    if not 1 <= days <= triage.MAX_SNOOZE_DAYS:
        raise triage.TriageError(f"snooze period must be 1 to {triage.MAX_SNOOZE_DAYS} days")
    if not reason:
        raise triage.TriageError("a snooze needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise triage.TriageError(f"reason is longer than {MAX_REASON_CHARS} characters")
    with store.engine.begin() as conn:
        return triage.add_snooze(conn, actor, account_id, detector, days, reason, time.time())


def lift(store: AlertStore, actor: str, snooze_id: int) -> dict:
    now = time.time()
    with store.engine.begin() as conn:
        row = conn.execute(select(snoozes).where(snoozes.c.id == snooze_id)).first()
        if row is None:
            raise triage.NotFound(f"no snooze {snooze_id}")
        if row.lifted_at is not None or row.until_epoch <= now:
            raise triage.TriageError("this snooze has already ended")
        conn.execute(
            update(snoozes)
            .where(snoozes.c.id == snooze_id)
            .values(until_epoch=now, lifted_at=now, lifted_by=actor)
        )
        triage.audit(
            conn,
            actor,
            "snooze_lift",
            row.account_id,
            {"snooze_id": snooze_id, "detector": row.detector, "was_until": row.until_epoch},
        )
        # Another snooze on the same key may still run; the workers get the latest end.
        still = conn.execute(
            select(snoozes.c.until_epoch, snoozes.c.reason)
            .where(
                snoozes.c.account_id == row.account_id,
                snoozes.c.detector == row.detector,
                snoozes.c.until_epoch > now,
            )
            .order_by(desc(snoozes.c.until_epoch))
        ).first()
    until, reason = (still[0], still[1]) if still else (now, f"lifted by {actor}")
    return {
        "account_id": row.account_id,
        "detector": row.detector,
        "until_epoch": until,
        "reason": reason,
    }
