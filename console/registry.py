"""The model registry's records in the store: versions, stages, and their audited history.

Every change (add, promote, rollback) is one transaction that writes the version's row,
a model_history row and an audit_log row, so the console's audit page shows who changed
the model, when and why. The files themselves are checked by the caller before anything
here runs (models/verify.py): this module never decides whether a model is good.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, desc, insert, select, update

from console.audit import audit
from console.schema import model_history, model_versions
from console.store import AlertStore


class RegistryError(ValueError):
    """A request the registry refuses; the message is one line."""


def _row(r: Any) -> dict:
    d = dict(r._mapping)
    if "metrics" in d:
        d["metrics"] = json.loads(d["metrics"])
    return d


def _champion(conn: Connection) -> str | None:
    q = select(model_versions.c.version).where(model_versions.c.stage == "champion")
    return conn.execute(q).scalar()


def _set_stage(conn: Connection, version: str, stage: str, now: float) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.version == version)
        .values(stage=stage, stage_changed_at=now)
    )


def _history(conn: Connection, actor: str, action: str, version: str, stage: str, **kw) -> None:
    conn.execute(
        insert(model_history).values(
            ts=time.time(), actor=actor, action=action, version=version, stage=stage, **kw
        )
    )


def add_version(
    store: AlertStore,
    version: str,
    model_version: str,
    path: str,
    actor: str,
    why: str,
    metrics: dict,
    parent: str | None = None,
) -> dict:
    now = time.time()
    with store.engine.begin() as conn:
        old = conn.execute(select(model_versions).where(model_versions.c.version == version))
        if (r := old.first()) is not None:
            raise RegistryError(f"model {version} is already registered (stage {r.stage})")
        if parent is not None and _get(conn, parent) is None:
            raise RegistryError(f"parent {parent} is not a registered version")
        conn.execute(
            insert(model_versions).values(
                version=version,
                model_version=model_version,
                path=path,
                stage="candidate",
                parent=parent,
                created_by=actor,
                created_at=now,
                why=why,
                metrics=json.dumps(metrics, sort_keys=True),
                stage_changed_at=now,
            )
        )
        _history(conn, actor, "add", version, "candidate", why=why)
        audit(conn, actor, "model_add", version, {"why": why, "parent": parent, "path": path})
    return get_version(store, version) or {}


def _get(conn: Connection, version: str) -> dict | None:
    r = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
    return _row(r) if r is not None else None


def get_version(store: AlertStore, version: str) -> dict | None:
    with store.engine.connect() as conn:
        return _get(conn, version)


def list_versions(store: AlertStore) -> list[dict]:
    q = select(model_versions).order_by(desc(model_versions.c.created_at))
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def history(store: AlertStore, version: str | None = None, limit: int = 100) -> list[dict]:
    q = select(model_history).order_by(desc(model_history.c.id)).limit(limit)
    if version is not None:
        q = q.where(model_history.c.version == version)
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def resolve(store: AlertStore, spec: str) -> dict:
    """A version by stage name (champion, shadow), full id or unique prefix of at least 4."""
    with store.engine.connect() as conn:
        if spec in ("champion", "shadow"):
            q = select(model_versions).where(model_versions.c.stage == spec)
            r = conn.execute(q).first()
            if r is None:
                raise RegistryError(f"the registry has no {spec}")
            return _row(r)
        if (exact := _get(conn, spec)) is not None:
            return exact
        if len(spec) >= 4:
            q = select(model_versions).where(model_versions.c.version.startswith(spec))
            hits = [_row(r) for r in conn.execute(q.limit(2))]
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise RegistryError(f"{spec!r} names more than one registered version")
    raise RegistryError(f"{spec!r} is not a registered version, nor champion or shadow")


def promote(store: AlertStore, version: str, actor: str, why: str, stage: str = "champion") -> dict:
    """Make `version` the champion (the old one is retired) or the shadow (the old shadow
    goes back to candidate). Returns {"version", "stage", "previous"}."""
    if stage not in ("champion", "shadow"):
        raise RegistryError(f"cannot promote to {stage!r}; use champion or shadow")
    now = time.time()
    with store.engine.begin() as conn:
        row = _get(conn, version)
        if row is None:
            raise RegistryError(f"{version} is not a registered version")
        if row["stage"] == stage:
            raise RegistryError(f"{version} is already the {stage}")
        champion = _champion(conn)
        if stage == "shadow":
            if champion == version:
                raise RegistryError(f"{version} is the champion; roll back or promote another")
            q = select(model_versions.c.version).where(model_versions.c.stage == "shadow")
            for old in conn.execute(q).scalars().all():
                _set_stage(conn, old, "candidate", now)
            previous = None
        else:
            if champion is not None:
                _set_stage(conn, champion, "retired", now)
            previous = champion
        _set_stage(conn, version, stage, now)
        _history(conn, actor, "promote", version, stage, previous=previous, why=why)
        audit(
            conn,
            actor,
            "model_promote",
            version,
            {"why": why, "stage": stage, "from": row["stage"], "replaces": previous},
        )
    return {"version": version, "stage": stage, "previous": previous}


def rollback_target(store: AlertStore) -> tuple[str, str]:
    """(current champion, the champion before it); RegistryError if there is none."""
    with store.engine.connect() as conn:
        return _rollback_target(conn)


def _made_champion(conn: Connection, version: str, before: int | None = None) -> Any:
    """The latest history row that made `version` champion (before row id `before`)."""
    q = select(model_history).where(
        model_history.c.version == version, model_history.c.stage == "champion"
    )
    if before is not None:
        q = q.where(model_history.c.id < before)
    return conn.execute(q.order_by(desc(model_history.c.id)).limit(1)).first()


def _rollback_target(conn: Connection) -> tuple[str, str]:
    current = _champion(conn)
    if current is None:
        raise RegistryError("the registry has no champion to roll back")
    made = _made_champion(conn, current)
    if made is None or made.previous is None:
        raise RegistryError(f"{current} has no previous champion to roll back to")
    return current, made.previous


def rollback(store: AlertStore, actor: str, why: str) -> dict:
    """The champion is retired and the one it replaced is champion again. Rolling back
    twice goes two champions back. Returns {"version", "stage", "previous"}."""
    now = time.time()
    with store.engine.begin() as conn:
        current, target = _rollback_target(conn)
        made = _made_champion(conn, current)
        # Where the restored champion itself came from, so the next rollback goes further.
        earlier = _made_champion(conn, target, before=made.id)
        _set_stage(conn, current, "retired", now)
        _set_stage(conn, target, "champion", now)
        _history(
            conn,
            actor,
            "rollback",
            target,
            "champion",
            previous=earlier.previous if earlier is not None else None,
            why=why,
        )
        audit(conn, actor, "model_rollback", target, {"why": why, "replaces": current})
    return {"version": target, "stage": "champion", "previous": current}
