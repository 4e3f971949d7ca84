"""Cases: alerts grouped per account or campaign, per-detector scores, snooze lifts, search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Existing alerts get their detector rows and arrival time here; they are grouped into cases
when the store is next opened (`console.casework.assign_unassigned`), by the same code that
groups new alerts, so there is one grouping rule and not a second copy in a migration.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as b:
        b.add_column(sa.Column("arrived_at", sa.Float, nullable=True))
        b.add_column(sa.Column("case_id", sa.Integer, nullable=True))
    op.create_index("ix_alerts_case", "alerts", ["case_id"])
    with op.batch_alter_table("notes") as b:
        b.add_column(sa.Column("case_id", sa.Integer, nullable=True))
    with op.batch_alter_table("snoozes") as b:
        b.add_column(sa.Column("lifted_at", sa.Float, nullable=True))
        b.add_column(sa.Column("lifted_by", sa.String(200), nullable=True))
    op.create_table(
        "alert_detectors",
        sa.Column("alert_id", sa.String(200), primary_key=True),
        sa.Column("detector", sa.String(200), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("case_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_alert_detectors_detector", "alert_detectors", ["detector", "score"])
    op.create_index("ix_alert_detectors_case", "alert_detectors", ["case_id", "detector"])
    op.create_table(
        "cases",
        sa.Column("case_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("reopen_reason", sa.Text, nullable=True),
        sa.Column("merged_into", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("severity_rank", sa.Integer, nullable=False, server_default="0"),
        sa.Column("score", sa.Float, nullable=False, server_default="0"),
        sa.Column("oldest_arrival", sa.Float, nullable=True),
        sa.Column("last_ts", sa.Float, nullable=True),
        sa.Column("alert_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_alerts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("account_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("main_category", sa.String(64), nullable=True),
    )
    op.create_index("ix_cases_queue", "cases", ["status", "severity_rank", "score"])
    op.create_index("ix_cases_assignee", "cases", ["assignee"])
    op.create_table(
        "case_accounts",
        sa.Column("account_id", sa.String(500), primary_key=True),
        sa.Column("case_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_case_accounts_case", "case_accounts", ["case_id"])
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    alerts = sa.table(
        "alerts",
        sa.column("alert_id"),
        sa.column("payload"),
        sa.column("updated_at"),
        sa.column("arrived_at"),
    )
    dets = sa.table(
        "alert_detectors",
        sa.column("alert_id"),
        sa.column("detector"),
        sa.column("score"),
        sa.column("threshold"),
    )
    # The best arrival time an old row has is when it was last written.
    conn.execute(sa.update(alerts).values(arrived_at=alerts.c.updated_at))
    rows = []
    for alert_id, payload in conn.execute(sa.select(alerts.c.alert_id, alerts.c.payload)):
        seen = set()
        for d in json.loads(payload).get("detectors", []):
            name = str(d["name"])
            # A detector that scored 0 contributed to nothing (thresholds are above 0).
            if name in seen or float(d["score"]) <= 0:
                continue
            seen.add(name)
            t = d.get("threshold")
            rows.append(
                {
                    "alert_id": alert_id,
                    "detector": name,
                    "score": float(d["score"]),
                    "threshold": None if t is None else float(t),
                }
            )
    if rows:
        conn.execute(sa.insert(dets), rows)
    _backfill_search_links(conn)


def _backfill_search_links(conn: sa.Connection) -> None:
    """IPs and key ids of stored snapshots, so search finds accounts seen before the upgrade."""
    snaps = sa.table(
        "snapshots",
        sa.column("account_id"),
        sa.column("window_start"),
        sa.column("window_end"),
        sa.column("ips"),
        sa.column("api_keys"),
    )
    links: dict[tuple[str, str, str], list[float]] = {}
    q = sa.select(
        snaps.c.account_id, snaps.c.window_start, snaps.c.window_end, snaps.c.ips, snaps.c.api_keys
    )
    for acct, start, end, ips, keys in conn.execute(q):
        for kind, values in (("ip", ips), ("api_key", keys)):
            for v in json.loads(values):
                seen = links.setdefault((kind, str(v)[:500], acct), [start, end])
                seen[0], seen[1] = min(seen[0], start), max(seen[1], end)
    table = sa.table(
        "account_links",
        sa.column("kind"),
        sa.column("value"),
        sa.column("account_id"),
        sa.column("first_seen"),
        sa.column("last_seen"),
    )
    rows = [
        {"kind": k, "value": v, "account_id": a, "first_seen": f, "last_seen": last}
        for (k, v, a), (f, last) in links.items()
    ]
    for i in range(0, len(rows), 5000):
        conn.execute(sa.insert(table), rows[i : i + 5000])


def downgrade() -> None:
    op.drop_table("case_accounts")
    op.drop_table("cases")
    op.drop_table("alert_detectors")
    with op.batch_alter_table("snoozes") as b:
        b.drop_column("lifted_by")
        b.drop_column("lifted_at")
    with op.batch_alter_table("notes") as b:
        b.drop_column("case_id")
    op.drop_index("ix_alerts_case", "alerts")
    with op.batch_alter_table("alerts") as b:
        b.drop_column("case_id")
        b.drop_column("arrived_at")
    conn = op.get_bind()
    conn.execute(sa.text("delete from account_links where kind in ('ip', 'api_key')"))
