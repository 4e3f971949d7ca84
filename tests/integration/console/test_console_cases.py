"""Cases on SQLite and a real PostgreSQL: grouping, reopening, verdicts on whole cases,
bulk actions audited per alert, the honest detector rule, search, snoozes, migration."""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from console import caseactions, casequeries, queries, snoozectl, triage
from console.casequeries import CaseFilter
from console.contrib import Thresholds
from console.store import AlertStore, open_store
from tests.console_data import CAMPAIGN, KEY_LEAK, STORM, demo_dataset, storm_dataset

TH = Thresholds(0.5)


@pytest.fixture
def storm(store: AlertStore) -> AlertStore:
    alerts, snaps = storm_dataset()
    store.write_alerts(alerts)
    store.write_snapshots(snaps)
    return store


def cases_by_title(st: AlertStore, view: str = "all") -> dict[str, dict]:
    q = casequeries.case_queue(st, CaseFilter(view=view), TH, per_page=500)
    return {c["title"]: c for c in q["items"]}


def audit_targets(st: AlertStore, action: str) -> Counter:
    return Counter(e["target"] for e in queries.audit_entries(st, 5000) if e["action"] == action)


def test_alerts_group_into_account_and_campaign_cases(storm: AlertStore) -> None:
    q = casequeries.case_queue(storm, CaseFilter(), TH, per_page=500)
    by_kind = Counter(c["kind"] for c in q["items"])
    assert by_kind["campaign"] == 2
    campaigns = [c for c in q["items"] if c["kind"] == "campaign"]
    members = {c["account_count"]: c for c in campaigns}
    assert set(members) == {len(CAMPAIGN), len(STORM)}
    assert members[len(STORM)]["alert_count"] == 3 * len(STORM)
    assert members[len(CAMPAIGN)]["title"] == "spam campaign · 4 linked accounts"
    leak = next(c for c in q["items"] if c["title"] == KEY_LEAK)
    assert leak["alert_count"] == 4 and leak["kind"] == "account"
    # One case per account otherwise: 12 background accounts, the key leak, the XSS account.
    assert by_kind["account"] == 12 + 1 + 1
    # Ranked by severity, then confidence, then the longest wait.
    keys = [(-c["severity_rank"], -c["score"], c["oldest_arrival"]) for c in q["items"]]
    assert keys == sorted(keys)
    assert q["items"][0]["severity"] == "critical"


def test_case_verdict_covers_every_alert_and_new_alerts_reopen(storm: AlertStore) -> None:
    storm_case = next(c for c in cases_by_title(storm).values() if c["account_count"] == 10)
    cid = storm_case["case_id"]
    req = caseactions.BulkRequest("verdict", triage.Verdict("misuse", "spam_campaign", "storm"))
    result = caseactions.on_cases(storm, "ana", [cid], req, TH)
    assert len(result.labels) == 30 and len(result.alerts) == 30
    detail = casequeries.case_detail(storm, cid, TH)
    assert detail["case"]["status"] == "closed" and detail["case"]["verdict"] == "misuse"
    assert {a["status"] for a in detail["alerts"]} == {"resolved"}
    # Every member alert has its own audit row.
    verdicts = audit_targets(storm, "verdict")
    assert all(verdicts[a["alert_id"]] == 1 for a in detail["alerts"])
    assert cid not in {
        c["case_id"] for c in casequeries.case_queue(storm, CaseFilter(), TH)["items"]
    }

    # A new alert on a member joins the closed case and reopens it, saying why.
    alerts, _ = storm_dataset()
    late = copy.deepcopy(next(a for a in alerts if a["account_id"] == STORM[3]))
    late.update(alert_id="late-storm-1", ts="2026-11-20T10:00:00Z")
    assert storm.write_alerts([late]) == 1
    detail = casequeries.case_detail(storm, cid, TH)
    assert detail["case"]["status"] == "open"
    assert "after the verdict misuse" in detail["case"]["reopen_reason"]
    assert detail["case"]["open_alerts"] == 1 and detail["case"]["alert_count"] == 31

    # A new alert on an account with an open case joins that case.
    leak_alert = copy.deepcopy(next(a for a in alerts if a["account_id"] == KEY_LEAK))
    leak_alert.update(alert_id="late-leak-1")
    before = cases_by_title(storm)[KEY_LEAK]
    storm.write_alerts([leak_alert])
    after = cases_by_title(storm)[KEY_LEAK]
    assert after["case_id"] == before["case_id"] and after["alert_count"] == 5


def test_needs_info_waits_and_assign_sets_in_review(storm: AlertStore) -> None:
    cid = cases_by_title(storm)[KEY_LEAK]["case_id"]
    caseactions.on_cases(storm, "ana", [cid], caseactions.BulkRequest("assign", assignee="ana"), TH)
    mine = casequeries.case_queue(storm, CaseFilter(assignee="ana"), TH)
    assert [c["case_id"] for c in mine["items"]] == [cid]
    assert mine["items"][0]["status"] == "in_review"
    assert audit_targets(storm, "assign").total() == 4
    req = caseactions.BulkRequest("verdict", triage.Verdict("needs_info"))
    caseactions.on_cases(storm, "ana", [cid], req, TH)
    assert casequeries.case_detail(storm, cid, TH)["case"]["status"] == "waiting"
    caseactions.add_case_note(storm, cid, "ana", "asked the customer")
    assert casequeries.case_detail(storm, cid, TH)["notes"][-1]["text"] == "asked the customer"


def test_detector_counts_equal_alerts_where_the_detector_contributed(storm: AlertStore) -> None:
    alerts, _ = storm_dataset()
    expected: Counter = Counter()
    for a in alerts:
        for d in a["detectors"]:
            if d["score"] >= 0.5:
                expected[d["name"]] += 1
    got = casequeries.case_queue(storm, CaseFilter(view="all"), TH)["detector_counts"]
    assert got == dict(expected)
    # Listed on every alert, but at 0 on all of them: never counted, never matched.
    assert "rules" not in got and "population" not in got
    for name in ("rules", "population", "baseline", "campaign", "classifier", "iforest"):
        total = queries.queue(storm, queries.QueueFilter(detector=name), th=TH)["total"]
        assert total == expected[name], name
    # The per-case filter keeps cases with at least one such alert.
    by_det = casequeries.case_queue(storm, CaseFilter(view="all", detector="classifier"), TH)
    assert by_det["total"] == 1 and by_det["items"][0]["account_count"] == 10
    # The queue lists only contributing detectors, with the same rule.
    listed = queries.queue(storm, queries.QueueFilter(account="storm-01"), th=TH)["items"]
    assert all("rules" not in a["detectors"] and "campaign" in a["detectors"] for a in listed)
    # A higher threshold for a detector moves its count.
    strict = Thresholds(0.5, {"classifier": 0.7})
    got = casequeries.case_queue(storm, CaseFilter(view="all"), strict)["detector_counts"]
    assert "classifier" not in got


def test_bulk_by_filter_and_on_alerts_is_audited_per_alert(storm: AlertStore) -> None:
    f = CaseFilter(category="anomaly")
    ids = casequeries.case_ids(storm, f, TH)
    n_alerts = sum(casequeries.case_detail(storm, i, TH)["case"]["alert_count"] for i in ids)
    req = caseactions.BulkRequest("close")
    res = caseactions.on_cases(storm, "ana", ids, req, TH)
    assert len(res.alerts) == n_alerts and len(res.cases) == len(ids)
    assert audit_targets(storm, "status").total() == n_alerts
    assert casequeries.case_ids(storm, f, TH) == []

    leak = casequeries.case_detail(storm, cases_by_title(storm)[KEY_LEAK]["case_id"], TH)
    two = [a["alert_id"] for a in leak["alerts"][:2]]
    snooze = caseactions.BulkRequest("snooze", snooze_days=7, snooze_reason="pen test")
    res = caseactions.on_alerts(storm, "ana", two, snooze, TH)
    # The contributing detectors of those alerts, once per account and detector.
    assert {s["detector"] for s in res.snoozes} == {"iforest", "baseline", "geo_velocity"}
    assert {(KEY_LEAK, d) for d in ("iforest", "baseline")} <= set(
        storm.active_snoozes(time.time())
    )
    with pytest.raises(triage.TriageError, match="reason"):
        caseactions.on_alerts(
            storm, "ana", two, caseactions.BulkRequest("snooze", snooze_days=7), TH
        )


@pytest.mark.parametrize(
    ("query", "kind", "expected"),
    [
        ("185.220.30.2", "", {KEY_LEAK}),  # an IP
        ("203.0.113.0/24", "", set(CAMPAIGN)),  # a /24
        ("203.0.113", "subnet", set(CAMPAIGN)),
        ("k-storm-4", "", {STORM[4]}),  # a key id
        ("spambot/1.0", "user_agent", set(CAMPAIGN)),
        ("ph-spam-1", "", set(CAMPAIGN)),  # a prompt hash
        ("leak", "account", {KEY_LEAK}),
    ],
)
def test_search_by_every_kind(storm: AlertStore, query: str, kind: str, expected: set) -> None:
    q = casequeries.case_queue(storm, CaseFilter(view="all", q=query, kind=kind), TH)
    found = {a for c in q["items"] for a in c["accounts"]}
    assert expected <= found
    assert all(set(c["accounts"]) & expected for c in q["items"])


def test_snoozes_are_listed_lifted_and_expire(storm: AlertStore) -> None:
    s = snoozectl.create(storm, "ana", KEY_LEAK, "geo_velocity", 3, "customer travelling")
    assert storm.active_snoozes(time.time())[(KEY_LEAK, "geo_velocity")] == s["until_epoch"]
    assert storm.active_snoozes(s["until_epoch"] + 1) == {}  # expires by itself
    with pytest.raises(triage.TriageError, match="no detector"):
        snoozectl.create(storm, "ana", KEY_LEAK, "geo", 3, "typo")
    row = snoozectl.list_snoozes(storm)[0]
    lifted = snoozectl.lift(storm, "ana", row["id"])
    assert lifted["until_epoch"] <= time.time()
    assert (KEY_LEAK, "geo_velocity") not in storm.active_snoozes(time.time())
    assert snoozectl.list_snoozes(storm) == []
    assert snoozectl.list_snoozes(storm, include_ended=True)[0]["state"] == "lifted"
    actions = [e["action"] for e in queries.audit_entries(storm)][:2]
    assert actions == ["snooze_lift", "snooze"]


def test_age_counts_and_sla_states(storm: AlertStore) -> None:
    now = time.time() + 5 * 3600
    q = casequeries.case_queue(storm, CaseFilter(), TH, now=now)
    assert dict(q["age_counts"])["4–24 h"] == q["total"]
    assert {c["sla"] for c in q["items"] if c["severity"] == "critical"} == {"breached"}
    assert {c["sla"] for c in q["items"] if c["severity"] == "low"} == {"ok"}


def test_stores_from_before_cases_are_upgraded(tmp_path: Path) -> None:
    """A store written by the previous release: migration 0002 and the first open give
    every old alert a case and its detector rows."""
    from alembic import command
    from alembic.config import Config

    from console.store import MIGRATIONS_INI, alert_row

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    cfg = Config(str(MIGRATIONS_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_INI.with_name("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    alerts, _ = demo_dataset()
    rows = []
    for a in alerts:
        r = alert_row(a, 1_700_000_000.0)
        r.pop("arrived_at")
        rows.append(r)
    cols = list(rows[0])
    with engine.begin() as conn:
        conn.execute(
            text(
                f"insert into alerts ({', '.join(cols)}) values ({', '.join(':' + c for c in cols)})"
            ),
            rows,
        )
    engine.dispose()
    with open_store(url) as st:
        q = casequeries.case_queue(st, CaseFilter(view="all"), TH, per_page=500)
        assert sum(c["alert_count"] for c in q["items"]) == len(alerts)
        assert sum(c["kind"] == "campaign" for c in q["items"]) == 1
        with st.engine.connect() as conn:
            n = conn.execute(text("select count(*) from alert_detectors")).scalar_one()
            arrived = conn.execute(text("select min(arrived_at) from alerts")).scalar_one()
        assert n == sum(len(a["detectors"]) for a in alerts)
        assert arrived == 1_700_000_000.0
        assert json.loads(json.dumps(q["detector_counts"]))["geo_velocity"] == 4


def test_related_accounts_rank_by_evidence_and_demote_common_values(storm: AlertStore) -> None:
    _, snaps = demo_dataset(windows=2, normal_accounts=0)
    template = next(s for s in snaps if s["account_id"] == CAMPAIGN[0])
    # Eleven unrelated accounts on the campaign's user agent make it a common value, and one
    # more account shares a key id with the campaign's first member.
    extra = [
        dict(
            template,
            account_id=f"acct-sdk-{k:02d}",
            user_agents=["spambot/1.0"],
            ips=[f"198.18.{k}.1"],
            subnets=[f"198.18.{k}.0/24"],
            prompt_hashes=[f"ph-sdk-{k}"],
            api_keys=[f"k-sdk-{k}"],
        )
        for k in range(11)
    ]
    extra.append(
        dict(
            template,
            account_id="acct-key-twin",
            user_agents=["other/1"],
            ips=["198.19.0.1"],
            subnets=["198.19.0.0/24"],
            prompt_hashes=["ph-twin"],
            api_keys=["k-spam-0"],
        )
    )
    storm.write_snapshots(extra)
    related = queries.related_accounts(storm, CAMPAIGN[0])
    ids = [r["account_id"] for r in related]
    assert set(ids[:3]) == set(CAMPAIGN[1:])
    assert "user_agent" in related[0]["weak"] and "user_agent" not in related[0]["shared"]
    # Tied only by a common user agent: not listed at all.
    assert not any(i.startswith("acct-sdk-") for i in ids)
    # A shared key is strong evidence on its own, above a lone /24 or user agent.
    twin = next(r for r in related if r["account_id"] == "acct-key-twin")
    assert twin["shared"] == {"api_key": ["k-spam-0"]}
    assert twin["strength"] == queries.EVIDENCE_WEIGHTS["api_key"]
    assert queries.evidence_strength({"user_agent": ["a"]}) < twin["strength"]


def test_reopening_an_alert_reopens_its_closed_case(storm: AlertStore) -> None:
    cid = cases_by_title(storm)[KEY_LEAK]["case_id"]
    caseactions.on_cases(storm, "ana", [cid], caseactions.BulkRequest("close"), TH)
    detail = casequeries.case_detail(storm, cid, TH)
    assert detail["case"]["status"] == "closed"
    triage.set_status(storm, detail["alerts"][0]["alert_id"], "ana", "open")
    case = casequeries.case_detail(storm, cid, TH)["case"]
    assert case["status"] == "open" and "set back to open" in case["reopen_reason"]
