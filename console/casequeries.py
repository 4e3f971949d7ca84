"""Read side of cases: the case queue, one case, queue health, search, detector counts."""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import Select, and_, desc, func, or_, select

from console.contrib import Thresholds
from console.schema import (
    ACTIVE_CASE_STATUSES,
    CASE_STATUSES,
    SEARCH_KINDS,
    SEVERITY_RANK,
    account_links,
    alert_detectors,
    alerts,
    audit_log,
    case_accounts,
    cases,
    labels,
    notes,
    snoozes,
)
from console.store import AlertStore, to_epoch

VIEWS = ("active", *CASE_STATUSES, "all")
# Minutes an alert of each severity may wait before its case breaches its SLA.
DEFAULT_SLA_MINUTES = {"critical": 15.0, "high": 60.0, "medium": 240.0, "low": 1440.0}
AGE_BUCKETS = (
    (3600.0, "< 1 h"),
    (4 * 3600.0, "1–4 h"),
    (86_400.0, "4–24 h"),
    (7 * 86_400.0, "1–7 d"),
    (float("inf"), "> 7 d"),
)
SEARCH_LABELS = {
    "": "anything",
    "account": "account",
    "ip": "IP",
    "subnet": "/24",
    "api_key": "key id",
    "user_agent": "user agent",
    "prompt_hash": "prompt hash",
}


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CaseFilter:
    view: str = ""  # "" means active: open, in review or waiting
    severity: str = ""
    category: str = ""
    detector: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    kind: str = ""  # what q is; "" guesses from its shape
    assignee: str = ""

    def as_params(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def check(self) -> CaseFilter:
        if self.view and self.view not in VIEWS:
            raise FilterError(f"view must be one of {', '.join(VIEWS)}")
        if self.severity and self.severity not in SEVERITY_RANK:
            raise FilterError(f"severity must be one of {', '.join(SEVERITY_RANK)}")
        if self.kind and self.kind not in SEARCH_LABELS:
            raise FilterError(
                f"search kind must be one of {', '.join(k for k in SEARCH_LABELS if k)}"
            )
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                try:
                    to_epoch(value)
                except ValueError:
                    raise FilterError(
                        f"{name} must be an RFC 3339 time such as 2026-10-01T00:00:00Z, "
                        f"not {value!r}"
                    ) from None
        return self


def guess_kind(q: str) -> str:
    """An IP or a /24 by its shape; anything else is matched against every kind."""
    text = q.strip()
    try:
        ipaddress.ip_address(text)
        return "ip"
    except ValueError:
        pass
    if text.endswith("/24"):
        return "subnet"
    return ""


def _subnet(q: str) -> str:
    text = q.strip()
    if text.count(".") == 2:  # "203.0.113" means its /24
        return text + ".0/24"
    return text


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_clause(q: str, kind: str) -> Any:
    """Alerts whose account matches the search (for WHERE on the alerts table)."""
    text = q.strip()
    kind = kind or guess_kind(text)
    by_account = alerts.c.account_id.like(f"%{_like_escape(text)}%", escape="\\")
    if kind == "account":
        return by_account
    value = _subnet(text) if kind == "subnet" else text
    linked = select(account_links.c.account_id).where(account_links.c.value == value[:500])
    if kind:
        return alerts.c.account_id.in_(linked.where(account_links.c.kind == kind))
    return or_(
        by_account, alerts.c.account_id.in_(linked.where(account_links.c.kind.in_(SEARCH_KINDS)))
    )


def _alert_where(f: CaseFilter, th: Thresholds, with_detector: bool = True) -> list[Any]:
    out = []
    if f.category:
        out.append(alerts.c.category == f.category)
    if f.detector and with_detector:
        out.append(th.alert_has(f.detector))
    if f.since:
        out.append(alerts.c.ts_epoch >= to_epoch(f.since))
    if f.until:
        out.append(alerts.c.ts_epoch <= to_epoch(f.until))
    if f.q.strip():
        out.append(search_clause(f.q, f.kind))
    return out


def _view_statuses(view: str) -> tuple[str, ...]:
    if view in ("", "active"):
        return ACTIVE_CASE_STATUSES
    if view == "all":
        return CASE_STATUSES
    return (view,)


def _case_where(q: Select, f: CaseFilter, th: Thresholds) -> Select:
    q = q.where(cases.c.status.in_(_view_statuses(f.view)))
    if f.severity:
        q = q.where(cases.c.severity_rank >= SEVERITY_RANK[f.severity])
    if f.assignee:
        q = q.where(cases.c.assignee == f.assignee)
    conds = _alert_where(f, th)
    if conds:
        q = q.where(cases.c.case_id.in_(select(alerts.c.case_id).where(and_(*conds))))
    return q


ORDER = (desc(cases.c.severity_rank), desc(cases.c.score), cases.c.oldest_arrival, cases.c.case_id)


def sla_state(severity: str, age_s: float | None, sla_minutes: dict[str, float]) -> str:
    """ok, due (past half its SLA) or breached."""
    if age_s is None:
        return "ok"
    limit = sla_minutes.get(severity, DEFAULT_SLA_MINUTES["low"]) * 60
    if age_s >= limit:
        return "breached"
    return "due" if age_s >= limit / 2 else "ok"


def severity_name(rank: int) -> str:
    return next((s for s, r in SEVERITY_RANK.items() if r == rank), "low")


def case_queue(
    store: AlertStore,
    f: CaseFilter,
    th: Thresholds,
    page: int = 1,
    per_page: int = 50,
    sla_minutes: dict[str, float] | None = None,
    now: float | None = None,
) -> dict:
    """One page of cases, most severe, most confident, then longest waiting first."""
    sla = sla_minutes or DEFAULT_SLA_MINUTES
    now = time.time() if now is None else now
    page, per_page = max(1, page), min(max(1, per_page), 500)
    with store.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                _case_where(select(cases), f, th)
                .order_by(*ORDER)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ]
        total = conn.execute(
            _case_where(select(func.count()).select_from(cases), f, th)
        ).scalar_one()
        ids = [r["case_id"] for r in rows]
        members = _members(conn, ids)
        dets = _case_detectors(conn, ids, th)
        health = _age_counts(conn, f, th, now)
        det_counts = detector_counts(conn, f, th)
    for r in rows:
        r["severity"] = severity_name(r["severity_rank"])
        r["age_s"] = None if r["oldest_arrival"] is None else max(0.0, now - r["oldest_arrival"])
        r["sla"] = sla_state(r["severity"], r["age_s"], sla) if r["status"] != "closed" else "ok"
        r["accounts"] = members.get(r["case_id"], [])
        r["detectors"] = dets.get(r["case_id"], [])
    return {
        "items": rows,
        "total": int(total),
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-int(total) // per_page)),
        "age_counts": health,
        "detector_counts": det_counts,
    }


def _members(conn: Any, ids: list[int], cap: int = 6) -> dict[int, list[str]]:
    if not ids:
        return {}
    out: dict[int, list[str]] = {}
    q = (
        select(alerts.c.case_id, alerts.c.account_id)
        .where(alerts.c.case_id.in_(ids))
        .group_by(alerts.c.case_id, alerts.c.account_id)
        .order_by(alerts.c.case_id, alerts.c.account_id)
    )
    for cid, acct in conn.execute(q):
        lst = out.setdefault(cid, [])
        if len(lst) < cap:
            lst.append(acct)
    return out


def _case_detectors(conn: Any, ids: list[int], th: Thresholds) -> dict[int, list[tuple[str, int]]]:
    """Per case: the detectors that contributed to its alerts, with how many alerts each."""
    if not ids:
        return {}
    q = (
        select(alert_detectors.c.case_id, alert_detectors.c.detector, func.count())
        .where(alert_detectors.c.case_id.in_(ids), th.contributed_clause())
        .group_by(alert_detectors.c.case_id, alert_detectors.c.detector)
    )
    out: dict[int, list[tuple[str, int]]] = {}
    for cid, det, n in conn.execute(q):
        out.setdefault(cid, []).append((det, int(n)))
    for v in out.values():
        v.sort(key=lambda x: (-x[1], x[0]))
    return out


def detector_counts(conn: Any, f: CaseFilter, th: Thresholds) -> dict[str, int]:
    """Alerts in the view per detector that contributed to them (the detector filter left out,
    so each count is what choosing that detector would cover)."""
    in_view = select(cases.c.case_id).where(cases.c.status.in_(_view_statuses(f.view)))
    if f.severity:
        in_view = in_view.where(cases.c.severity_rank >= SEVERITY_RANK[f.severity])
    if f.assignee:
        in_view = in_view.where(cases.c.assignee == f.assignee)
    q = select(alert_detectors.c.detector, func.count()).where(
        th.contributed_clause(), alert_detectors.c.case_id.in_(in_view)
    )
    conds = _alert_where(f, th, with_detector=False)
    if conds:
        # Only then join the alerts: a plain view counts from alert_detectors alone.
        q = q.join(alerts, alerts.c.alert_id == alert_detectors.c.alert_id).where(*conds)
    q = q.group_by(alert_detectors.c.detector)
    return dict(sorted(((d, int(n)) for d, n in conn.execute(q)), key=lambda x: (-x[1], x[0])))


def _age_counts(conn: Any, f: CaseFilter, th: Thresholds, now: float) -> list[tuple[str, int]]:
    """Open cases in this filter by how long their oldest open alert has waited."""
    active = replace(f, view="active") if f.view in ("", "active", "all", "closed") else f
    ages = conn.execute(_case_where(select(cases.c.oldest_arrival), active, th)).scalars().all()
    counts = [0] * len(AGE_BUCKETS)
    for t in ages:
        age = 0.0 if t is None else now - t
        counts[next(i for i, (limit, _) in enumerate(AGE_BUCKETS) if age < limit)] += 1
    return [(label, n) for (_, label), n in zip(AGE_BUCKETS, counts, strict=True)]


def neighbours(
    store: AlertStore, f: CaseFilter, th: Thresholds, case_id: int
) -> tuple[int | None, int | None]:
    """The cases before and after this one in the filter's order."""
    with store.engine.connect() as conn:
        ids = (
            conn.execute(_case_where(select(cases.c.case_id), f, th).order_by(*ORDER).limit(10_000))
            .scalars()
            .all()
        )
    if case_id not in ids:
        return None, (ids[0] if ids else None)
    i = ids.index(case_id)
    return (ids[i - 1] if i > 0 else None), (ids[i + 1] if i + 1 < len(ids) else None)


def first_case(store: AlertStore, f: CaseFilter, th: Thresholds, skip: set[int]) -> int | None:
    with store.engine.connect() as conn:
        q = _case_where(select(cases.c.case_id), f, th).order_by(*ORDER).limit(len(skip) + 1)
        return next((c for c in conn.execute(q).scalars() if c not in skip), None)


def case_detail(store: AlertStore, case_id: int, th: Thresholds) -> dict | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
        if row is None:
            return None
        c = dict(row._mapping)
        items = [
            dict(r._mapping)
            for r in conn.execute(
                select(alerts).where(alerts.c.case_id == case_id).order_by(desc(alerts.c.ts_epoch))
            )
        ]
        ids = [a["alert_id"] for a in items]
        mapped = (
            conn.execute(
                select(case_accounts.c.account_id).where(case_accounts.c.case_id == case_id)
            )
            .scalars()
            .all()
        )
        accts = sorted({a["account_id"] for a in items} | set(mapped))
        lab = _in(conn, labels, labels.c.alert_id, ids, labels.c.id)
        nts = [
            dict(r._mapping)
            for r in conn.execute(
                select(notes)
                .where(or_(notes.c.case_id == case_id, notes.c.alert_id.in_(ids or [""])))
                .order_by(notes.c.id)
            )
        ]
        snz = _in(conn, snoozes, snoozes.c.account_id, accts, snoozes.c.id)
        trail = _in(conn, audit_log, audit_log.c.target, [f"case:{case_id}", *ids], audit_log.c.id)
    for a in items:
        payload = json.loads(a.pop("payload"))
        a["reasons"] = payload.get("reasons", [])
        a["detector_table"] = th.table(payload)
        a["contributed"] = [d for d in a["detector_table"] if d["over"]]
        a["related_accounts"] = payload.get("related_accounts", [])
    for t in trail:
        t["detail"] = json.loads(t["detail"])
    c["severity"] = severity_name(c["severity_rank"])
    return {
        "case": c,
        "alerts": items,
        "accounts": accts,
        "labels": lab,
        "notes": nts,
        "snoozes": snz,
        "audit": trail,
    }


def _in(conn: Any, table: Any, col: Any, values: list, order: Any) -> list[dict]:
    out: list[dict] = []
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        out += [dict(r._mapping) for r in conn.execute(select(table).where(col.in_(chunk)))]
    key = order.key
    return sorted(out, key=lambda r: r[key])


def case_of_alert(store: AlertStore, alert_id: str) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(select(alerts.c.case_id).where(alerts.c.alert_id == alert_id)).scalar()


def case_of_account(store: AlertStore, account_id: str) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(
            select(case_accounts.c.case_id).where(case_accounts.c.account_id == account_id)
        ).scalar()


def case_ids(store: AlertStore, f: CaseFilter, th: Thresholds, cap: int = 10_000) -> list[int]:
    """Every case the filter matches, in queue order (for bulk actions on the whole filter)."""
    with store.engine.connect() as conn:
        q = _case_where(select(cases.c.case_id), f, th).order_by(*ORDER).limit(cap)
        return list(conn.execute(q).scalars())
