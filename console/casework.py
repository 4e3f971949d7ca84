"""Grouping alerts into cases as they arrive.

A case holds the alerts of one account; a campaign case holds the alerts of every account
the engine tied together by campaign evidence (an alert's `related_accounts`). Each account
points at the case its next alert joins (`case_accounts`). A new alert on a closed case
reopens it and says why. Runs inside the store's write transaction, so an alert is never
stored without its case.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, select, update

from console.schema import (
    ACTIVE_CASE_STATUSES,
    alert_detectors,
    alerts,
    audit_log,
    case_accounts,
    cases,
)

SYSTEM_ACTOR = "vigil"


def _audit(conn: Connection, action: str, case_id: int, detail: dict) -> None:
    conn.execute(
        insert(audit_log).values(
            ts=time.time(),
            actor=SYSTEM_ACTOR,
            action=action,
            target=f"case:{case_id}",
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True),
        )
    )


class _Grouper:
    """The case state of the accounts in one batch, read once and written back as it changes."""

    def __init__(self, conn: Connection, accounts: set[str], now: float) -> None:
        self.conn = conn
        self.now = now
        self.mapping: dict[str, int] = {}
        for chunk in _chunks(sorted(accounts)):
            q = select(case_accounts.c.account_id, case_accounts.c.case_id).where(
                case_accounts.c.account_id.in_(chunk)
            )
            self.mapping.update(dict(conn.execute(q).all()))
        self.info: dict[int, dict] = {}
        self._load(set(self.mapping.values()))
        self.touched: set[int] = set()
        self.merged_into: dict[int, int] = {}

    def _load(self, ids: set[int]) -> None:
        missing = sorted(ids - set(self.info))
        for chunk in _chunks(missing):
            q = select(cases.c.case_id, cases.c.kind, cases.c.status, cases.c.verdict).where(
                cases.c.case_id.in_(chunk)
            )
            for r in conn_rows(self.conn, q):
                self.info[r["case_id"]] = r

    def _new_case(self, kind: str, title: str) -> int:
        cid = self.conn.execute(
            insert(cases).values(
                kind=kind,
                title=title[:500],
                status="open",
                created_at=self.now,
                updated_at=self.now,
            )
        ).inserted_primary_key[0]
        self.info[int(cid)] = {"case_id": int(cid), "kind": kind, "status": "open", "verdict": None}
        return int(cid)

    def _map(self, account: str, cid: int) -> None:
        old = self.mapping.get(account)
        if old == cid:
            return
        if old is None:
            self.conn.execute(insert(case_accounts).values(account_id=account, case_id=cid))
        else:
            self.conn.execute(
                update(case_accounts)
                .where(case_accounts.c.account_id == account)
                .values(case_id=cid)
            )
        self.mapping[account] = cid

    def _merge(self, src: int, dst: int) -> None:
        """Move an open case's alerts into `dst`; the emptied case is marked merged."""
        self.conn.execute(update(alerts).where(alerts.c.case_id == src).values(case_id=dst))
        self.conn.execute(
            update(alert_detectors).where(alert_detectors.c.case_id == src).values(case_id=dst)
        )
        self.conn.execute(
            update(case_accounts).where(case_accounts.c.case_id == src).values(case_id=dst)
        )
        for acct, cid in self.mapping.items():
            if cid == src:
                self.mapping[acct] = dst
        self.conn.execute(
            update(cases)
            .where(cases.c.case_id == src)
            .values(status="merged", merged_into=dst, updated_at=self.now)
        )
        self.info[src]["status"] = "merged"
        self.merged_into[src] = dst
        _audit(self.conn, "case_merge", src, {"into": dst})
        self.touched.update((src, dst))

    def case_for(self, account: str, related: list[str]) -> int:
        if not related:
            cid = self.mapping.get(account)
            if cid is None or self.info[cid]["status"] == "merged":
                cid = self._new_case("account", account)
                self._map(account, cid)
            return cid
        members = [account, *related]
        current = {self.mapping[m] for m in members if m in self.mapping}
        campaigns = [c for c in current if self.info[c]["kind"] == "campaign"]
        active = sorted(c for c in campaigns if self.info[c]["status"] in ACTIVE_CASE_STATUSES)
        closed = sorted(c for c in campaigns if self.info[c]["status"] == "closed")
        if active:
            target = active[0]
        elif closed:
            target = closed[-1]
        else:
            target = self._new_case("campaign", f"campaign of {account}")
        for other in active[1:]:
            self._merge(other, target)
        for m in members:
            cid = self.mapping.get(m)
            if cid == target:
                continue
            open_own = cid is not None and self.info[cid]["kind"] == "account"
            if open_own and self.info[cid]["status"] in ACTIVE_CASE_STATUSES:
                self._merge(cid, target)
            self._map(m, target)
        return target

    def reopen_if_closed(self, cid: int, alert: dict) -> None:
        info = self.info[cid]
        if info["status"] != "closed":
            return
        reason = (
            f"reopened by a new {alert['severity']} {alert['category']} alert on "
            f"{alert['account_id']} at {alert['ts']} after the verdict "
            f"{info['verdict'] or 'closed without verdict'}"
        )
        self.conn.execute(
            update(cases)
            .where(cases.c.case_id == cid)
            .values(
                status="open",
                verdict=None,
                category=None,
                reopen_reason=reason,
                updated_at=self.now,
            )
        )
        _audit(self.conn, "case_reopen", cid, {"reason": reason, "alert_id": alert["alert_id"]})
        info.update(status="open", verdict=None)


def conn_rows(conn: Connection, q: Any) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(q)]


def _chunks(items: list, size: int = 500) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def group_alerts(conn: Connection, items: list[dict], now: float) -> set[int]:
    """Put newly stored alerts (payload dicts) into cases; returns the cases touched."""
    if not items:
        return set()
    items = sorted(items, key=lambda a: (str(a["ts"]), str(a["alert_id"])))
    accounts = {str(a["account_id"]) for a in items}
    for a in items:
        accounts.update(str(r) for r in a.get("related_accounts") or ())
    g = _Grouper(conn, accounts, now)
    placed: list[dict] = []
    for a in items:
        acct = str(a["account_id"])
        related = sorted({str(r) for r in a.get("related_accounts") or ()} - {acct})
        cid = g.case_for(acct, related)
        g.reopen_if_closed(cid, a)
        placed.append({"b_alert_id": str(a["alert_id"]), "b_case_id": cid})
        g.touched.add(cid)
    for p in placed:  # a case merged later in this batch hands its new alerts on too
        while p["b_case_id"] in g.merged_into:
            p["b_case_id"] = g.merged_into[p["b_case_id"]]
    conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == bindparam("b_alert_id"))
        .values(case_id=bindparam("b_case_id")),
        placed,
    )
    conn.execute(
        update(alert_detectors)
        .where(alert_detectors.c.alert_id == bindparam("b_alert_id"))
        .values(case_id=bindparam("b_case_id")),
        placed,
    )
    refresh(conn, g.touched)
    return g.touched


def refresh(conn: Connection, case_ids: set[int]) -> None:
    """Recompute each case's queue columns from its alerts (severity and age of the open ones)."""
    unresolved = alerts.c.status != "resolved"
    for chunk in _chunks(sorted(case_ids)):
        stats = conn.execute(
            select(
                alerts.c.case_id,
                func.coalesce(
                    func.max(case((unresolved, alerts.c.severity_rank))),
                    func.max(alerts.c.severity_rank),
                ),
                func.coalesce(
                    func.max(case((unresolved, alerts.c.score))), func.max(alerts.c.score)
                ),
                func.min(case((unresolved, alerts.c.arrived_at))),
                func.max(alerts.c.ts_epoch),
                func.count(),
                func.sum(case((unresolved, 1), else_=0)),
                func.count(func.distinct(alerts.c.account_id)),
            )
            .where(alerts.c.case_id.in_(chunk))
            .group_by(alerts.c.case_id)
        ).all()
        cats: dict[int, Counter] = {}
        for cid, cat, n in conn.execute(
            select(alerts.c.case_id, alerts.c.category, func.count())
            .where(alerts.c.case_id.in_(chunk))
            .group_by(alerts.c.case_id, alerts.c.category)
        ):
            cats.setdefault(cid, Counter())[cat] = n
        members = dict(
            conn.execute(
                select(case_accounts.c.case_id, func.count())
                .where(case_accounts.c.case_id.in_(chunk))
                .group_by(case_accounts.c.case_id)
            ).all()
        )
        rows = []
        seen = set()
        for cid, rank, score, oldest, last, n, n_open, n_acct in stats:
            seen.add(cid)
            main = cats[cid].most_common(1)[0][0] if cid in cats else None
            rows.append(
                {
                    "b_case_id": cid,
                    "severity_rank": int(rank or 0),
                    "score": float(score or 0.0),
                    "oldest_arrival": oldest,
                    "last_ts": last,
                    "alert_count": int(n),
                    "open_alerts": int(n_open or 0),
                    "account_count": max(int(n_acct), int(members.get(cid, 0))),
                    "main_category": main,
                }
            )
        for cid in set(chunk) - seen:  # a merged case has no alerts left
            rows.append(
                {
                    "b_case_id": cid,
                    "severity_rank": 0,
                    "score": 0.0,
                    "oldest_arrival": None,
                    "last_ts": None,
                    "alert_count": 0,
                    "open_alerts": 0,
                    "account_count": int(members.get(cid, 0)),
                    "main_category": None,
                }
            )
        if rows:
            conn.execute(
                update(cases)
                .where(cases.c.case_id == bindparam("b_case_id"))
                .values(**{k: bindparam(k) for k in rows[0] if k != "b_case_id"}),
                rows,
            )
            _retitle_campaigns(conn, chunk)


def _retitle_campaigns(conn: Connection, chunk: list[int]) -> None:
    q = select(cases.c.case_id, cases.c.main_category, cases.c.account_count).where(
        cases.c.case_id.in_(chunk), cases.c.kind == "campaign"
    )
    for cid, cat, n in conn.execute(q).all():
        title = f"{(cat or 'linked').replace('_', ' ')} · {n} linked accounts"
        conn.execute(update(cases).where(cases.c.case_id == cid).values(title=title))


def assign_unassigned(engine: Engine, batch: int = 5000) -> int:
    """Alerts stored before cases existed (or by an older writer) join cases now."""
    done = 0
    while True:
        with engine.begin() as conn:
            payloads = (
                conn.execute(
                    select(alerts.c.payload)
                    .where(alerts.c.case_id.is_(None))
                    .order_by(alerts.c.ts_epoch)
                    .limit(batch)
                )
                .scalars()
                .all()
            )
            if not payloads:
                return done
            group_alerts(conn, [json.loads(p) for p in payloads], time.time())
            done += len(payloads)
