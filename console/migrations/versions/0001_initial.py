"""Initial alert store: alerts, snapshots, links, labels, notes, snoozes, audit log, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(500), nullable=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("ts_epoch", sa.Float, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("severity_rank", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("detector_names", sa.Text, nullable=False),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("window_end", sa.Float, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alerts_queue", "alerts", ["severity_rank", "ts_epoch"])
    op.create_index("ix_alerts_account", "alerts", ["account_id", "ts_epoch"])
    op.create_index("ix_alerts_category", "alerts", ["category"])
    op.create_index("ix_alerts_status", "alerts", ["status"])

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(500), primary_key=True),
        sa.Column("plan", sa.String(64), nullable=False, server_default=""),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("account_id", sa.String(500), primary_key=True),
        sa.Column("window_start", sa.Float, primary_key=True),
        sa.Column("window_end", sa.Float, nullable=False),
        sa.Column("plan", sa.String(64), nullable=False, server_default=""),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("ips", sa.Text, nullable=False),
        sa.Column("countries", sa.Text, nullable=False),
        sa.Column("user_agents", sa.Text, nullable=False),
        sa.Column("api_keys", sa.Text, nullable=False),
        sa.Column("prompt_hashes", sa.Text, nullable=False),
        sa.Column("subnets", sa.Text, nullable=False),
    )
    op.create_table(
        "account_links",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(500), primary_key=True),
        sa.Column("account_id", sa.String(500), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_index("ix_account_links_account", "account_links", ["account_id"])
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(500), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("analyst", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_labels_account", "labels", ["account_id"])
    op.create_index("ix_labels_alert", "labels", ["alert_id"])
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(500), nullable=False),
        sa.Column("alert_id", sa.String(200), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_notes_account", "notes", ["account_id"])
    op.create_table(
        "snoozes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(500), nullable=False),
        sa.Column("detector", sa.String(200), nullable=False),
        sa.Column("until_epoch", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_snoozes_until", "snoozes", ["until_epoch"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_ts", "audit_log", ["ts"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "users",
        "audit_log",
        "snoozes",
        "notes",
        "labels",
        "account_links",
        "snapshots",
        "accounts",
        "alerts",
    ):
        op.drop_table(name)
