"""The model registry (versions and their stage history) and stored backtest diffs.

Revision ID: 0004_models
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_models"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("parent", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("stage_changed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_model_versions_stage", "model_versions", ["stage"])
    op.create_table(
        "model_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_index("ix_model_history_version", "model_history", ["version"])
    op.create_table(
        "backtests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("champion", sa.String(200), nullable=False),
        sa.Column("challenger", sa.String(200), nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("diff", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("backtests")
    op.drop_table("model_history")
    op.drop_table("model_versions")
