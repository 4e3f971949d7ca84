"""The audit log: one row per action, who did it, on what, with what."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection, insert

from console.schema import audit_log


def audit(conn: Connection, actor: str, action: str, target: str, detail: dict) -> None:
    conn.execute(
        insert(audit_log).values(
            ts=time.time(),
            actor=actor,
            action=action,
            target=target,
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True),
        )
    )
