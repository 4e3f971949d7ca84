"""The registry's records on SQLite and PostgreSQL: stages, the champion stack, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from console.registry import (
    RegistryError,
    add_version,
    history,
    list_versions,
    promote,
    resolve,
    rollback,
)
from console.schema import audit_log
from console.store import AlertStore


def _stages(store: AlertStore) -> dict[str, str]:
    return {r["version"]: r["stage"] for r in list_versions(store)}


def test_rollback_walks_back_through_champions(store: AlertStore) -> None:
    for v in ("m-aaaa00000000", "m-bbbb00000000", "m-cccc00000000", "m-cccc11111111"):
        add_version(store, v, "clf-" + v[2:], f"/reg/{v}", "olga", "why", {"k": 1})
    with pytest.raises(RegistryError, match="already registered"):
        add_version(store, "m-aaaa00000000", "x", "/x", "olga", "again", {})
    with pytest.raises(RegistryError, match="more than one"):
        resolve(store, "m-cccc")
    assert resolve(store, "m-bbbb")["metrics"] == {"k": 1}
    for v in ("m-aaaa00000000", "m-bbbb00000000", "m-cccc00000000"):
        promote(store, v, "olga", f"promote {v}")
    assert resolve(store, "champion")["version"] == "m-cccc00000000"
    promote(store, "m-cccc11111111", "olga", "beside", "shadow")
    assert rollback(store, "ivan", "c is bad")["version"] == "m-bbbb00000000"
    assert rollback(store, "ivan", "b is bad too")["version"] == "m-aaaa00000000"
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(store, "ivan", "nothing before a")
    assert _stages(store) == {
        "m-aaaa00000000": "champion",
        "m-bbbb00000000": "retired",
        "m-cccc00000000": "retired",
        "m-cccc11111111": "shadow",
    }
    # A promotion after rollbacks starts a new stack from the restored champion.
    promote(store, "m-bbbb00000000", "olga", "b fixed")
    assert rollback(store, "ivan", "not fixed")["version"] == "m-aaaa00000000"
    actions = [(h["action"], h["version"]) for h in history(store)][:3]
    assert actions[0] == ("rollback", "m-aaaa00000000")
    with store.engine.connect() as conn:
        audited = conn.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.action.like("model_%"))
        ).scalar()
    assert audited == 4 + 5 + 3  # adds, promotions (one to shadow), rollbacks
    with pytest.raises(RegistryError, match="is the champion"):
        promote(store, "m-aaaa00000000", "olga", "shadow the champion", "shadow")
