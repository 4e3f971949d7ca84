"""The alert store: one data-access layer over SQLite (WAL) or PostgreSQL.

Runners write alerts and account snapshots through `AlertStore`; the console reads and
triages through the same object. `open_store(url)` picks the dialect from the URL and
brings the schema up to date with the shipped Alembic migrations.
"""

from __future__ import annotations

import time
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, case, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite

from console import casework
from console.contrib import detector_rows
from console.schema import (
    SEVERITY_RANK,
    account_links,
    accounts,
    alert_detectors,
    alerts,
    snapshots,
    snoozes,
)

MIGRATIONS_INI = Path(__file__).with_name("alembic.ini")
# Longer evidence values are cut to fit the column; they still match each other.
LINK_VALUE_MAX_LEN = 500


def normalize_url(url: str) -> str:
    """A bare path means an SQLite file, so `--store data/vigil.db` works."""
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).expanduser().resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The database file an SQLite store's URL (or bare path) names; None for another
    kind of store and for an in-memory one."""
    full = normalize_url(url)
    path = full.removeprefix("sqlite:///") if full.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def to_epoch(ts: str | float | int) -> float:
    if isinstance(ts, int | float):
        return float(ts)
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the console read while a runner writes; the timeout rides out short locks.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


def url_problem(url: str) -> str | None:
    """Why `url` cannot name a store, or None: checked before a run starts."""
    scheme = normalize_url(url).split("://", 1)[0]
    if scheme not in SCHEMES:
        return f"unsupported store {scheme!r}; use sqlite:///PATH, a file path or postgresql://..."
    path = sqlite_file(url)
    if path is not None and path.is_dir():
        return "is a directory; give the database file"
    return None


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_INI.with_name("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        # "heads": migrations written on parallel branches apply side by side until a
        # merge revision joins them, instead of failing on more than one head.
        command.upgrade(cfg, "heads")


def _insert(engine: Engine, table: Any) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _jdump(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def alert_row(alert: dict, now: float) -> dict:
    window = alert.get("window") or {}
    ts_epoch = to_epoch(alert["ts"])
    names = [str(d["name"]) for d in alert.get("detectors", [])]
    return {
        "alert_id": str(alert["alert_id"]),
        "account_id": str(alert["account_id"]),
        "ts": str(alert["ts"]),
        "ts_epoch": ts_epoch,
        "severity": alert["severity"],
        "severity_rank": SEVERITY_RANK.get(alert["severity"], 0),
        "score": float(alert["score"]),
        "category": str(alert["category"]),
        "detector_names": "," + ",".join(names) + ",",
        "window_start": to_epoch(window.get("start", ts_epoch)),
        "window_end": to_epoch(window.get("end", ts_epoch)),
        "payload": _jdump(alert),
        "status": "open",
        "updated_at": now,
        "arrived_at": now,
    }


def snapshot_row(row: dict) -> dict:
    return {
        "account_id": str(row["account_id"]),
        "window_start": to_epoch(row["window_start"]),
        "window_end": to_epoch(row["window_end"]),
        "plan": str(row.get("plan") or ""),
        # orjson writes NaN/inf as null, which the console reads as "not computed".
        "features": _jdump(row.get("features") or {}),
        **{k: _jdump(row.get(k) or ()) for k in SNAPSHOT_LISTS},
    }


SNAPSHOT_LISTS = ("ips", "countries", "user_agents", "api_keys", "prompt_hashes", "subnets")
LINK_SOURCES = {
    "subnet": "subnets",
    "user_agent": "user_agents",
    "prompt_hash": "prompt_hashes",
    # Indexed for search, not for relating accounts (see queries.related_accounts).
    "ip": "ips",
    "api_key": "api_keys",
}


class AlertStore:
    """The sink runners write to, and the data the console reads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = self.insert(snapshots)
        self._upsert_snapshot = s.on_conflict_do_update(
            index_elements=["account_id", "window_start"],
            set_={c: s.excluded[c] for c in ("window_end", "plan", "features", *SNAPSHOT_LISTS)},
        )
        a = self.insert(accounts)
        self._upsert_account = a.on_conflict_do_update(
            index_elements=["account_id"],
            set_={
                "first_seen": _least(accounts.c.first_seen, a.excluded.first_seen),
                "last_seen": _greatest(accounts.c.last_seen, a.excluded.last_seen),
                "plan": case(
                    (a.excluded.last_seen >= accounts.c.last_seen, a.excluded.plan),
                    else_=accounts.c.plan,
                ),
            },
        )
        k = self.insert(account_links)
        self._upsert_link = k.on_conflict_do_update(
            index_elements=["kind", "value", "account_id"],
            set_={
                "first_seen": _least(account_links.c.first_seen, k.excluded.first_seen),
                "last_seen": _greatest(account_links.c.last_seen, k.excluded.last_seen),
            },
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table: Any) -> Any:
        return _insert(self.engine, table)

    def write_alerts(self, items: list[dict]) -> int:
        """Store alerts; an alert_id already stored is left as it is. Returns rows added."""
        if not items:
            return 0
        now = time.time()
        rows: dict[str, dict] = {}
        payloads: dict[str, dict] = {}
        for a in items:
            rows.setdefault(str(a["alert_id"]), alert_row(a, now))
            payloads.setdefault(str(a["alert_id"]), a)
        stmt = self.insert(alerts).on_conflict_do_nothing(index_elements=["alert_id"])
        with self.engine.begin() as conn:
            before = conn.execute(
                select(alerts.c.alert_id).where(alerts.c.alert_id.in_(list(rows)))
            ).scalars()
            known = set(before)
            new = [k for k in rows if k not in known]
            if not new:
                return 0
            conn.execute(stmt, [rows[k] for k in new])
            dets = [d for k in new for d in detector_rows(payloads[k])]
            if dets:
                conn.execute(alert_detectors.insert(), dets)
            # Only alerts new to the store join cases: a replayed alert keeps its case.
            casework.group_alerts(conn, [payloads[k] for k in new], now)
        return len(new)

    def write_snapshots(self, rows: list[dict]) -> None:
        """Upsert account-window snapshots and the evidence that links accounts."""
        if not rows:
            return
        snaps: dict[tuple[str, float], dict] = {}
        accts: dict[str, list] = {}  # account -> [plan, first_seen, last_seen]
        links: dict[tuple[str, str, str], list[float]] = {}  # -> [first_seen, last_seen]
        for raw in rows:
            r = snapshot_row(raw)
            acct_id, start, end = r["account_id"], r["window_start"], r["window_end"]
            snaps[(acct_id, start)] = r
            acct = accts.get(acct_id)
            if acct is None:
                accts[acct_id] = [r["plan"], start, end]
            else:
                acct[1] = min(acct[1], start)
                if end >= acct[2]:
                    acct[2] = end
                    acct[0] = r["plan"] or acct[0]
            for kind, field in LINK_SOURCES.items():
                for value in raw.get(field) or ():
                    key = (kind, str(value)[:LINK_VALUE_MAX_LEN], acct_id)
                    seen = links.get(key)
                    if seen is None:
                        links[key] = [start, end]
                    else:
                        seen[0] = min(seen[0], start)
                        seen[1] = max(seen[1], end)
        with self.engine.begin() as conn:
            _bulk(conn, self._upsert_snapshot, list(snaps.values()))
            _bulk(
                conn,
                self._upsert_account,
                [
                    {"account_id": a, "plan": p, "first_seen": f, "last_seen": last}
                    for a, (p, f, last) in accts.items()
                ],
            )
            _bulk(
                conn,
                self._upsert_link,
                [
                    {"kind": k, "value": v, "account_id": a, "first_seen": f, "last_seen": last}
                    for (k, v, a), (f, last) in links.items()
                ],
            )

    def active_snoozes(self, now_epoch: float) -> dict[tuple[str, str], float]:
        """(account_id, detector) -> the latest `until` among snoozes still running."""
        out: dict[tuple[str, str], float] = {}
        q = select(snoozes.c.account_id, snoozes.c.detector, snoozes.c.until_epoch).where(
            snoozes.c.until_epoch > now_epoch
        )
        with self.engine.connect() as conn:
            for account_id, detector, until in conn.execute(q):
                key = (account_id, detector)
                out[key] = max(until, out.get(key, 0.0))
        return out

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bulk(conn: Connection, stmt: Any, rows: list[dict]) -> None:
    """executemany straight on the driver: snapshot batches are large, and building
    SQLAlchemy parameters row by row costs more than the database work."""
    if not rows:
        return
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    if compiled.positional:
        pick = itemgetter(*compiled.positiontup)
        conn.exec_driver_sql(compiled.string, [pick(r) for r in rows])
    else:
        conn.exec_driver_sql(compiled.string, rows)


def _least(a: Any, b: Any) -> Any:
    return case((a <= b, a), else_=b)


def _greatest(a: Any, b: Any) -> Any:
    return case((a >= b, a), else_=b)


def open_store(url: str) -> AlertStore:
    """Open (and migrate) the store named by `url`: sqlite:///path, a bare path, or postgresql+psycopg://..."""
    engine = make_engine(url)
    migrate(engine)
    casework.assign_unassigned(engine)
    return AlertStore(engine)
