"""Read side of the console: the queue, one alert, one account, related accounts, audit."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, and_, desc, func, select

from console.contrib import Thresholds
from console.schema import (
    SEVERITY_RANK,
    account_links,
    accounts,
    alert_detectors,
    alerts,
    audit_log,
    labels,
    notes,
    snapshots,
    snoozes,
)
from console.store import SNAPSHOT_LISTS, AlertStore, to_epoch

# A value shared by more accounts than this is background, not evidence of a campaign: an
# SDK's default user agent is common even among a few hundred accounts, a /24 less so, and
# an identical prompt from many accounts is still telling.
MAX_ACCOUNTS_PER_LINK = {
    "user_agent": 10,
    "subnet": 25,
    "ip": 25,
    "prompt_hash": 50,
    "api_key": 50,
}
# In a large store a value on more than this share of all accounts is background too.
COMMON_SHARE = 0.02
MIN_COMMON = 10
# What one shared value of each kind is worth: a shared key or prompt is hard to explain
# away, a shared /24 less so, a user agent is what an SDK sends by default.
EVIDENCE_WEIGHTS = {
    "engine": 6.0,
    "api_key": 5.0,
    "prompt_hash": 3.0,
    "ip": 3.0,
    "subnet": 2.0,
    "user_agent": 1.0,
}
QUEUE_COLUMNS = (
    alerts.c.alert_id,
    alerts.c.account_id,
    alerts.c.ts,
    alerts.c.severity,
    alerts.c.score,
    alerts.c.category,
    alerts.c.detector_names,
    alerts.c.status,
    alerts.c.assignee,
    alerts.c.verdict,
    alerts.c.payload,
)


@dataclass(frozen=True)
class QueueFilter:
    severity: str = ""
    category: str = ""
    detector: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    account: str = ""

    def as_params(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(q: Select, f: QueueFilter, th: Thresholds | None = None) -> Select:
    if f.severity:
        q = q.where(alerts.c.severity_rank >= SEVERITY_RANK.get(f.severity, 0))
    if f.category:
        q = q.where(alerts.c.category == f.category)
    if f.detector:
        # Only alerts the detector contributed to (score at or above its threshold).
        q = q.where((th or Thresholds()).alert_has(f.detector))
    if f.status:
        q = q.where(alerts.c.status == f.status)
    if f.since:
        q = q.where(alerts.c.ts_epoch >= to_epoch(f.since))
    if f.until:
        q = q.where(alerts.c.ts_epoch <= to_epoch(f.until))
    if f.account:
        q = q.where(alerts.c.account_id.like(f"%{_like_escape(f.account)}%", escape="\\"))
    return q


def _queue_item(r: Any, th: Thresholds) -> dict:
    d = dict(r._mapping)
    d.pop("detector_names")
    d["detectors"] = [x["name"] for x in th.contributed(json.loads(d.pop("payload")))]
    return d


def queue(
    store: AlertStore,
    f: QueueFilter,
    page: int = 1,
    per_page: int = 50,
    th: Thresholds | None = None,
) -> dict:
    """One page of the queue, most severe then most recent first, with per-category counts."""
    th = th or Thresholds()
    page = max(1, page)
    per_page = min(max(1, per_page), 500)
    with store.engine.connect() as conn:
        items = conn.execute(
            _where(select(*QUEUE_COLUMNS), f, th)
            .order_by(desc(alerts.c.severity_rank), desc(alerts.c.ts_epoch), alerts.c.alert_id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        total = conn.execute(_where(select(func.count()).select_from(alerts), f, th)).scalar_one()
        # Counts ignore the category filter so the analyst sees where else to look.
        by_cat = conn.execute(
            _where(
                select(alerts.c.category, func.count()).group_by(alerts.c.category),
                replace(f, category=""),
                th,
            )
        ).all()
    return {
        "items": [_queue_item(r, th) for r in items],
        "total": int(total),
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-int(total) // per_page)),
        "category_counts": dict(sorted(((c, int(n)) for c, n in by_cat), key=lambda x: -x[1])),
    }


def detector_names(store: AlertStore) -> list[str]:
    """Detector names in the store, for the queue's filter menu (sampled from recent alerts)."""
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(alert_detectors.c.detector).distinct()).scalars())


def _rows(conn: Any, q: Select) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(q)]


def alert_detail(store: AlertStore, alert_id: str) -> dict | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
        if row is None:
            return None
        out = {
            "alert": json.loads(row.payload),
            "status": row.status,
            "assignee": row.assignee,
            "verdict": row.verdict,
            "case_id": row.case_id,
            "arrived_at": row.arrived_at,
            "labels": _rows(
                conn, select(labels).where(labels.c.alert_id == alert_id).order_by(labels.c.id)
            ),
            "notes": _rows(
                conn, select(notes).where(notes.c.alert_id == alert_id).order_by(notes.c.id)
            ),
            "audit": _rows(
                conn,
                select(audit_log).where(audit_log.c.target == alert_id).order_by(audit_log.c.id),
            ),
        }
    return out


def account_view(
    store: AlertStore, account_id: str, max_windows: int = 2016, th: Thresholds | None = None
) -> dict | None:
    """Everything the account page shows; `max_windows` caps the timeline (a week of 5 min)."""
    with store.engine.connect() as conn:
        acct = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
        hist = _rows(
            conn,
            select(*QUEUE_COLUMNS, alerts.c.window_start, alerts.c.window_end)
            .where(alerts.c.account_id == account_id)
            .order_by(desc(alerts.c.ts_epoch)),
        )
        if acct is None and not hist:
            return None
        snaps = conn.execute(
            select(snapshots)
            .where(snapshots.c.account_id == account_id)
            .order_by(desc(snapshots.c.window_start))
            .limit(max_windows)
        ).all()[::-1]
        lab = _rows(
            conn, select(labels).where(labels.c.account_id == account_id).order_by(labels.c.id)
        )
        nts = _rows(
            conn, select(notes).where(notes.c.account_id == account_id).order_by(notes.c.id)
        )
        snz = _rows(
            conn, select(snoozes).where(snoozes.c.account_id == account_id).order_by(snoozes.c.id)
        )
    seen: dict[str, Counter] = {k: Counter() for k in SNAPSHOT_LISTS}
    timeline = []
    for s in snaps:
        for k in SNAPSHOT_LISTS:
            seen[k].update(json.loads(getattr(s, k)))
        timeline.append(
            {
                "window_start": s.window_start,
                "window_end": s.window_end,
                "features": json.loads(s.features),
            }
        )
    for h in hist:
        h.pop("detector_names")
        h["detectors"] = [
            x["name"] for x in (th or Thresholds()).contributed(json.loads(h.pop("payload")))
        ]
    return {
        "account_id": account_id,
        "plan": acct.plan if acct else "",
        "first_seen": acct.first_seen if acct else None,
        "last_seen": acct.last_seen if acct else None,
        "seen": {k: seen[k].most_common() for k in SNAPSHOT_LISTS},
        "timeline": timeline,
        "alerts": hist,
        "labels": lab,
        "notes": nts,
        "snoozes": snz,
    }


def common_limit(kind: str, total_accounts: int, share: float = COMMON_SHARE) -> int:
    """How many accounts may share a value before it is background: the kind's cap, lowered
    to `share` of all accounts in a large store (never below MIN_COMMON)."""
    cap = MAX_ACCOUNTS_PER_LINK.get(kind, 10)
    return min(cap, max(MIN_COMMON, int(share * total_accounts)))


def related_accounts(
    store: AlertStore, account_id: str, limit: int = 30, share: float = COMMON_SHARE
) -> list[dict]:
    """Accounts sharing evidence with this one, strongest evidence first.

    Each shared value adds its kind's weight (a key or a prompt outweighs a /24, which
    outweighs a user agent); the engine's own campaign link adds the most. A value seen on
    more accounts than `common_limit` is background: it is listed as weak and adds nothing,
    and an account tied only by such values is not listed at all.
    """
    mine = account_links.alias("mine")
    other = account_links.alias("other")
    q = (
        select(other.c.kind, other.c.value, other.c.account_id)
        .join(mine, and_(mine.c.kind == other.c.kind, mine.c.value == other.c.value))
        .where(mine.c.account_id == account_id, other.c.account_id != account_id)
        .limit(20_000)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
        payloads = (
            conn.execute(select(alerts.c.payload).where(alerts.c.account_id == account_id))
            .scalars()
            .all()
        )
        total = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
    per_value: dict[tuple[str, str], set[str]] = defaultdict(set)
    for kind, value, other_id in rows:
        per_value[(kind, value)].add(other_id)
    shared: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    weak: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (kind, value), ids in per_value.items():
        # +1: this account holds the value too.
        common = len(ids) + 1 > common_limit(kind, int(total), share)
        for other_id in ids:
            (weak if common else shared)[other_id][kind].append(value)
    engine_related = {r for p in payloads for r in json.loads(p).get("related_accounts", [])}
    for other_id in engine_related - {account_id}:
        shared[other_id].setdefault("engine", [])
    if not shared:
        return []
    ids = list(shared)
    with store.engine.connect() as conn:
        alerted = conn.execute(
            select(alerts.c.account_id, func.max(alerts.c.severity_rank), func.count())
            .where(alerts.c.account_id.in_(ids[:5000]))
            .group_by(alerts.c.account_id)
        ).all()
    alerted_map = {a: (rank, n) for a, rank, n in alerted}
    out = []
    for other_id, kinds in shared.items():
        rank, n = alerted_map.get(other_id, (0, 0))
        out.append(
            {
                "account_id": other_id,
                "shared": {k: sorted(v)[:10] for k, v in kinds.items()},
                "weak": {k: sorted(v)[:5] for k, v in weak.get(other_id, {}).items()},
                "strength": evidence_strength(kinds),
                "alerts": int(n),
                "max_severity": next((s for s, r in SEVERITY_RANK.items() if r == rank), None),
            }
        )
    out.sort(key=lambda d: (-d["strength"], -d["alerts"], d["account_id"]))
    return out[:limit]


def evidence_strength(kinds: dict[str, list[str]]) -> float:
    """Weighted evidence; a few values of a kind count, many do not count many times over."""
    score = 0.0
    for kind, values in kinds.items():
        w = EVIDENCE_WEIGHTS.get(kind, 1.0)
        score += w if kind == "engine" else w * min(len(values), 3)
    return score


def audit_entries(
    store: AlertStore, limit: int = 200, offset: int = 0, actor: str = ""
) -> list[dict]:
    q = select(audit_log).order_by(desc(audit_log.c.id)).limit(limit).offset(offset)
    if actor:
        q = q.where(audit_log.c.actor == actor)
    with store.engine.connect() as conn:
        rows = _rows(conn, q)
    for r in rows:
        r["detail"] = json.loads(r["detail"])
    return rows


def all_labels(store: AlertStore) -> list[dict]:
    with store.engine.connect() as conn:
        return _rows(conn, select(labels).order_by(labels.c.id))


def queue_rows(
    store: AlertStore, f: QueueFilter, th: Thresholds | None = None, cap: int = 100_000
) -> list[dict]:
    """The whole filtered queue for CSV export, in queue order."""
    th = th or Thresholds()
    with store.engine.connect() as conn:
        rows = conn.execute(
            _where(select(*QUEUE_COLUMNS), f, th)
            .order_by(desc(alerts.c.severity_rank), desc(alerts.c.ts_epoch), alerts.c.alert_id)
            .limit(cap)
        ).all()
    return [_queue_item(r, th) for r in rows]


def case_file(store: AlertStore, account_id: str) -> dict | None:
    """One account's case: alerts with reasons, verdicts, notes, snoozes and audit trail."""
    view = account_view(store, account_id)
    if view is None:
        return None
    ids = [a["alert_id"] for a in view["alerts"]]
    with store.engine.connect() as conn:
        payloads = (
            conn.execute(
                select(alerts.c.payload)
                .where(alerts.c.account_id == account_id)
                .order_by(alerts.c.ts_epoch)
            )
            .scalars()
            .all()
        )
        trail = _rows(
            conn,
            select(audit_log)
            .where(audit_log.c.target.in_([account_id, *ids]))
            .order_by(audit_log.c.id),
        )
    for t in trail:
        t["detail"] = json.loads(t["detail"])
    return {
        "format": "vigil-case/1",
        "account": {k: view[k] for k in ("account_id", "plan", "first_seen", "last_seen", "seen")},
        "alerts": [json.loads(p) for p in payloads],
        "alert_status": {
            a["alert_id"]: {
                "status": a["status"],
                "verdict": a["verdict"],
                "assignee": a["assignee"],
            }
            for a in view["alerts"]
        },
        "labels": view["labels"],
        "notes": view["notes"],
        "snoozes": view["snoozes"],
        "audit": trail,
        "related_accounts": related_accounts(store, account_id),
    }
