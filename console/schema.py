"""Tables of the alert store.

The Alembic migrations under console/migrations/ create exactly these tables; a test
compares the migrated database with this metadata so the two cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
STATUSES = ("open", "acknowledged", "resolved")
# A case's life: open -> in_review / waiting -> closed (with a verdict). "merged" marks an
# account case whose alerts moved into a campaign case; it never shows in the queue.
CASE_STATUSES = ("open", "in_review", "waiting", "closed")
ACTIVE_CASE_STATUSES = ("open", "in_review", "waiting")
VERDICTS = ("misuse", "false_positive", "needs_info")
# Evidence kinds that tie accounts together; values come from snapshot rows.
LINK_KINDS = ("subnet", "user_agent", "prompt_hash")
# Also indexed, for search only: an IP or key id finds its accounts.
SEARCH_KINDS = ("ip", "subnet", "api_key", "user_agent", "prompt_hash")

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(200), primary_key=True),
    Column("account_id", String(500), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("ts_epoch", Float, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("severity_rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("category", String(64), nullable=False),
    # ",name1,name2," so one LIKE finds alerts a detector took part in, on both dialects.
    Column("detector_names", Text, nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("assignee", String(200), nullable=True),
    Column("verdict", String(32), nullable=True),
    Column("updated_at", Float, nullable=False),
    # Processing time: when the store received the alert (its age in the queue), not event time.
    Column("arrived_at", Float, nullable=True),
    Column("case_id", Integer, nullable=True),
    Index("ix_alerts_queue", "severity_rank", "ts_epoch"),
    Index("ix_alerts_account", "account_id", "ts_epoch"),
    Index("ix_alerts_category", "category"),
    Index("ix_alerts_status", "status"),
    Index("ix_alerts_case", "case_id"),
)

# One row per (alert, detector) so "which detectors contributed" is a query on score against
# threshold, decided when read (the console's thresholds), not a substring of a name list.
alert_detectors = Table(
    "alert_detectors",
    metadata,
    Column("alert_id", String(200), primary_key=True),
    Column("detector", String(200), primary_key=True),
    Column("score", Float, nullable=False),
    # The alert's own threshold for this detector, when the engine sent one.
    Column("threshold", Float, nullable=True),
    # The alert's case, copied here so per-detector counts over a queue view need no join
    # with the alerts table (kept in step by console.casework, the only code that moves
    # alerts between cases).
    Column("case_id", Integer, nullable=True),
    Index("ix_alert_detectors_detector", "detector", "score"),
    Index("ix_alert_detectors_case", "case_id", "detector"),
)

cases = Table(
    "cases",
    metadata,
    Column("case_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # account | campaign
    Column("title", String(500), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("verdict", String(32), nullable=True),
    Column("category", String(64), nullable=True),
    Column("assignee", String(200), nullable=True),
    Column("reopen_reason", Text, nullable=True),
    Column("merged_into", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Kept up to date from the case's alerts so the queue is one indexed scan of this table.
    Column("severity_rank", Integer, nullable=False, server_default="0"),
    Column("score", Float, nullable=False, server_default="0"),
    Column("oldest_arrival", Float, nullable=True),
    Column("last_ts", Float, nullable=True),
    Column("alert_count", Integer, nullable=False, server_default="0"),
    Column("open_alerts", Integer, nullable=False, server_default="0"),
    Column("account_count", Integer, nullable=False, server_default="0"),
    Column("main_category", String(64), nullable=True),
    Index("ix_cases_queue", "status", "severity_rank", "score"),
    Index("ix_cases_assignee", "assignee"),
)

# The case an account's next alert joins: its own, or the campaign case it was pulled into.
case_accounts = Table(
    "case_accounts",
    metadata,
    Column("account_id", String(500), primary_key=True),
    Column("case_id", Integer, nullable=False),
    Index("ix_case_accounts_case", "case_id"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(500), primary_key=True),
    Column("plan", String(64), nullable=False, server_default=""),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("account_id", String(500), primary_key=True),
    Column("window_start", Float, primary_key=True),
    Column("window_end", Float, nullable=False),
    Column("plan", String(64), nullable=False, server_default=""),
    Column("features", Text, nullable=False),
    Column("ips", Text, nullable=False),
    Column("countries", Text, nullable=False),
    Column("user_agents", Text, nullable=False),
    Column("api_keys", Text, nullable=False),
    Column("prompt_hashes", Text, nullable=False),
    Column("subnets", Text, nullable=False),
)

account_links = Table(
    "account_links",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("value", String(500), primary_key=True),
    Column("account_id", String(500), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("ix_account_links_account", "account_id"),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(200), nullable=False),
    Column("account_id", String(500), nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("category", String(64), nullable=True),
    Column("note", Text, nullable=False, server_default=""),
    Column("analyst", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_labels_account", "account_id"),
    Index("ix_labels_alert", "alert_id"),
)

notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(500), nullable=False),
    Column("alert_id", String(200), nullable=True),
    Column("case_id", Integer, nullable=True),
    Column("author", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_notes_account", "account_id"),
)

snoozes = Table(
    "snoozes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(500), nullable=False),
    Column("detector", String(200), nullable=False),
    Column("until_epoch", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("lifted_at", Float, nullable=True),
    Column("lifted_by", String(200), nullable=True),
    Index("ix_snoozes_until", "until_epoch"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(500), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_ts", "ts"),
)

users = Table(
    "users",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(300), nullable=False),
    Column("token_hash", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
)

# Server-side sign-in sessions. The cookie carries a random token; only its SHA-256 is
# stored, so a copy of the database cannot be replayed as cookies. Deleting a row signs
# that browser out at once (logout, password change, user removal).
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(200), nullable=False),
    Column("csrf_nonce", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_sessions_user", "user_name"),
    Index("ix_sessions_expires", "expires_at"),
)

# The model registry (console/registry.py): one row per content-addressed model version,
# its files under the registry root (models/registry.py). Stages: candidate, shadow,
# champion (at most one each of the last two), retired.
MODEL_STAGES = ("candidate", "shadow", "champion", "retired")
model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("model_version", String(64), nullable=False),  # the card's, carried by alerts
    Column("path", Text, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("parent", String(64), nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("why", Text, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON: the card's held-out figures
    Column("stage_changed_at", Float, nullable=False),
    Index("ix_model_versions_stage", "stage"),
)

# Every stage change, in order. `previous` is the champion a promotion replaced, so a
# rollback walks back through champions as through a stack.
model_history = Table(
    "model_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),  # add | promote | rollback
    Column("version", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("previous", String(64), nullable=True),
    Column("why", Text, nullable=False),
    Index("ix_model_history_version", "version"),
)

# Backtest diffs (`vigil backtest --store`), shown at /backtests/{id}.
backtests = Table(
    "backtests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("champion", String(200), nullable=False),
    Column("challenger", String(200), nullable=False),
    Column("events", Text, nullable=False),
    Column("diff", Text, nullable=False),  # JSON, as `--json` writes it
)
