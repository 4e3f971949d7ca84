"""The alert store on SQLite and on a real PostgreSQL: sink writes, idempotence, triage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from console import queries, triage
from console.labels import FileLabelPublisher, read_labels
from console.schema import metadata
from console.store import MIGRATIONS_INI, AlertStore, open_store
from tests.console_data import CAMPAIGN, KEY_LEAK, T0, demo_dataset


@pytest.fixture
def filled(store: AlertStore) -> AlertStore:
    alerts, snaps = demo_dataset()
    store.write_alerts(alerts)
    store.write_snapshots(snaps)
    return store


def test_migrations_create_exactly_the_schema(store: AlertStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        versions = set(conn.execute(text("select version_num from alembic_version")).scalars())
    assert diff == []
    # One chain: 0001, cases (0002), sessions (0003), model registry (0004_models).
    scripts = ScriptDirectory(str(MIGRATIONS_INI.with_name("migrations")))
    assert versions == set(scripts.get_heads()) == {"0004_models"}
    assert set(inspect(store.engine).get_table_names()) >= set(metadata.tables)


def test_sqlite_store_runs_in_wal_mode(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "plain-path.db")) as st, st.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_writing_the_same_alerts_twice_adds_nothing(store: AlertStore) -> None:
    alerts, snaps = demo_dataset()
    assert store.write_alerts(alerts) == len(alerts)
    store.write_snapshots(snaps)
    assert store.write_alerts(alerts) == 0
    store.write_snapshots(snaps)
    # Duplicates inside one batch collapse too.
    assert store.write_alerts(alerts[:3] + alerts[:3]) == 0
    with store.engine.connect() as conn:
        n_alerts = conn.execute(text("select count(*) from alerts")).scalar_one()
        n_snaps = conn.execute(text("select count(*) from snapshots")).scalar_one()
    assert n_alerts == len(alerts)
    assert n_snaps == len(snaps)


def test_rewrite_keeps_analyst_state(filled: AlertStore) -> None:
    alerts, _ = demo_dataset()
    aid = alerts[0]["alert_id"]
    triage.set_status(filled, aid, "ana", "acknowledged")
    filled.write_alerts(alerts)
    assert queries.alert_detail(filled, aid)["status"] == "acknowledged"


def test_queue_sorts_by_severity_then_recency_and_filters(filled: AlertStore) -> None:
    q = queries.queue(filled, queries.QueueFilter(), page=1, per_page=500)
    ranks = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    keys = [(ranks[a["severity"]], a["ts"]) for a in q["items"]]
    assert keys == sorted(keys, reverse=True)
    assert q["items"][0]["severity"] == "critical"
    assert sum(q["category_counts"].values()) == q["total"]

    spam = queries.queue(filled, queries.QueueFilter(category="spam_campaign"))
    assert {a["account_id"] for a in spam["items"]} == set(CAMPAIGN)
    assert spam["category_counts"]["key_leak"] == 4  # counts ignore the category filter

    geo = queries.queue(filled, queries.QueueFilter(detector="geo_velocity"))
    assert geo["total"] == 4 and all(a["account_id"] == KEY_LEAK for a in geo["items"])
    assert queries.queue(filled, queries.QueueFilter(detector="geo"))["total"] == 0

    high = queries.queue(filled, queries.QueueFilter(severity="high"))
    assert high["total"] == 4 + len(CAMPAIGN)
    found = queries.queue(filled, queries.QueueFilter(account="spam-3"))
    assert [a["account_id"] for a in found["items"]] == ["acct-spam-3"]
    assert queries.queue(filled, queries.QueueFilter(account="%"))["total"] == 0

    since = queries.queue(filled, queries.QueueFilter(since="2026-11-18T00:00:00Z"))
    until = queries.queue(filled, queries.QueueFilter(until="2026-11-18T00:00:00Z"))
    assert since["total"] + until["total"] == q["total"]

    page2 = queries.queue(filled, queries.QueueFilter(), page=2, per_page=5)
    assert [a["alert_id"] for a in page2["items"]] == [a["alert_id"] for a in q["items"][5:10]]


def test_account_view_and_related_accounts(filled: AlertStore) -> None:
    v = queries.account_view(filled, KEY_LEAK)
    assert v["plan"] == "enterprise"
    assert len(v["timeline"]) == 48
    assert dict(v["seen"]["api_keys"]) == {"k-leak": 48}
    assert "RU" in dict(v["seen"]["countries"])
    assert v["first_seen"] == T0
    related = queries.related_accounts(filled, "acct-spam-1")
    ids = [r["account_id"] for r in related]
    assert set(ids[:3]) == {"acct-spam-2", "acct-spam-3", "acct-spam-4"}
    top = related[0]
    assert {"subnet", "user_agent", "prompt_hash"} <= set(top["shared"])
    # Normal accounts share nothing with the campaign.
    assert not any(i.startswith("acct-normal") for i in ids)
    # Twelve accounts on the same SDK user agent is background, not a campaign.
    assert queries.related_accounts(filled, "acct-normal-000") == []


def test_verdict_labels_audits_and_snoozes(filled: AlertStore, tmp_path: Path) -> None:
    alerts, _ = demo_dataset()
    normal = next(a for a in alerts if a["account_id"].startswith("acct-normal"))
    pub = FileLabelPublisher(tmp_path / "labels.jsonl")
    with pytest.raises(triage.TriageError):
        triage.record_verdict(
            filled,
            normal["alert_id"],
            "ana",
            triage.Verdict(
                "false_positive",
                snooze_detectors=("iforest",),
                snooze_days=181,
                snooze_reason="batch job",
            ),
        )
    with pytest.raises(triage.TriageError):
        triage.record_verdict(filled, normal["alert_id"], "ana", triage.Verdict("misuse"))
    label = triage.record_verdict(
        filled,
        normal["alert_id"],
        "ana",
        triage.Verdict(
            "false_positive",
            note="nightly batch",
            snooze_detectors=("iforest",),
            snooze_days=30,
            snooze_reason="known nightly batch job",
        ),
    )
    pub.publish_label(label)
    snoozed = filled.active_snoozes(time.time())
    until = snoozed[(normal["account_id"], "iforest")]
    assert 29.9 * 86_400 < until - time.time() <= 30 * 86_400
    assert filled.active_snoozes(until + 1) == {}
    d = queries.alert_detail(filled, normal["alert_id"])
    assert d["verdict"] == "false_positive" and d["status"] == "resolved"
    actions = [e["action"] for e in queries.audit_entries(filled)]
    # The account's only alert is resolved, so its case closes too, audited on the case.
    assert actions == ["case_status", "snooze", "verdict"]
    audit_snooze = queries.audit_entries(filled)[1]
    assert audit_snooze["detail"]["reason"] == "known nightly batch job"
    assert read_labels(tmp_path / "labels.jsonl")[0]["verdict"] == "false_positive"

    triage.assign(filled, normal["alert_id"], "ana", "ana")
    triage.add_note(filled, normal["alert_id"], "ana", "checked with the customer")
    case = queries.case_file(filled, normal["account_id"])
    assert case["labels"][0]["note"] == "nightly batch"
    assert case["notes"][0]["text"] == "checked with the customer"
    assert {e["action"] for e in case["audit"]} == {"verdict", "snooze", "assign", "note"}
    assert case["alerts"][0]["alert_id"] == normal["alert_id"]


def test_snapshot_upsert_tracks_account_lifetime(store: AlertStore) -> None:
    _, snaps = demo_dataset()
    leak = [s for s in snaps if s["account_id"] == KEY_LEAK]
    store.write_snapshots(leak[10:20])
    store.write_snapshots(leak[:5])
    store.write_snapshots(leak[30:])
    v = queries.account_view(store, KEY_LEAK)
    assert v["first_seen"] == T0
    assert v["last_seen"] == T0 + 48 * 300
    assert len(v["timeline"]) == 5 + 10 + 18


def test_features_the_engine_could_not_compute_read_as_missing(store: AlertStore) -> None:
    _, snaps = demo_dataset(windows=2, normal_accounts=1)
    row = dict(snaps[0], features={"requests": float("nan"), "tokens": 5.0})
    store.write_snapshots([row])
    (window,) = queries.account_view(store, row["account_id"])["timeline"]
    assert window["features"] == {"requests": None, "tokens": 5.0}


def test_sessions_live_in_the_store_and_are_revoked(store: AlertStore) -> None:
    from console.sessions import count_sessions, create_session, end_session, read_session
    from console.users import add_user

    secret = b"s" * 32
    add_user(store, "ana", "analyst", "first password")
    first, nonce = create_session(store, secret, "ana", 3600)
    second, _ = create_session(store, secret, "ana", 3600)
    found = read_session(store, secret, first)
    assert found is not None and (found.user_name, found.role, found.csrf_nonce) == (
        "ana",
        "analyst",
        nonce,
    )
    assert end_session(store, secret, first) and read_session(store, secret, first) is None
    assert read_session(store, secret, second) is not None
    add_user(store, "ana", "analyst", "second password")  # a password change
    assert read_session(store, secret, second) is None and count_sessions(store, "ana") == 0
    expired, _ = create_session(store, secret, "ana", -1)
    assert read_session(store, secret, expired) is None
    create_session(store, secret, "ana", 3600)  # signing in purges expired rows
    assert count_sessions(store, "ana") == 1
