"""Issue 19, finding 2: where two account ids share a code, they stay two accounts.

With the keyed hash nobody can arrange such a collision, so these tests force them: a
test-only mode keeps only a few bits of every account code (`use_key(..., account_bits)`),
so that nearly every pair of accounts collides. Before, an attacker's account id with the
victim's code raised a `high` alert in the victim's name, and the victim's snapshot showed
the attacker's IP, user agent and plan.
"""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from streams.contract.codes import DEMO_HASH_KEY, use_key
from streams.contract.events import decode_lines
from streams.engine.engine import Engine
from streams.features.identity import next_code
from streams.features.state import AccountTable
from tests.events_util import T0, line


@pytest.fixture
def weak_codes():
    """Account codes of one bit: every account id has the code 1."""

    def weaken(bits: int = 1) -> None:
        use_key(DEMO_HASH_KEY, account_bits=bits)

    yield weaken
    use_key(DEMO_HASH_KEY)


def test_colliding_accounts_get_their_own_slots(weak_codes) -> None:
    weak_codes(1)
    lines = [line(account_id=a, event_id=f"{a}{i}") for i in range(3) for a in "abcab"]
    batch, _ = decode_lines(lines, now_ts=T0 + 3600)
    assert set(batch.account_id.tolist()) == {1}, "the mode makes every account collide"
    table = AccountTable(4)
    names = lambda rows: batch.texts(rows, "account_id")  # noqa: E731
    slots = table.slots_for(batch.account_id, names, batch.account_check)
    assert [table.ids[s] for s in slots.tolist()] == [orjson.loads(x)["account_id"] for x in lines]
    assert len(table) == 3 and table.collisions == 2
    # The next batch finds the same slots, the moved accounts' included.
    again = table.slots_for(batch.account_id, names, batch.account_check)
    assert again.tolist() == slots.tolist() and len(table) == 3
    # A checkpoint keeps them apart too.
    copy = AccountTable()
    copy.load_state_dict(table.state_dict())
    assert copy.slots_for(batch.account_id, names, batch.account_check).tolist() == slots.tolist()


def test_an_attackers_colliding_account_does_not_alert_in_the_victims_name(weak_codes) -> None:
    """Free-tier farming on the attacker's account raises its alert on that account; the
    victim's history keeps the victim's plan and IP."""
    engine = Engine()
    weak_codes(1)
    lines = []
    for i in range(60):
        ts = T0 + i * 10
        lines.append(line(account_id="acct_000141", event_id=f"v{i}", ts=ts, plan="enterprise",
                          ip="198.51.100.7", prompt_tokens=50, completion_tokens=20))  # fmt: skip
        lines.append(line(account_id="forged_account", event_id=f"a{i}", ts=ts, plan="free",
                          ip="203.0.113.99", prompt_tokens=9000, completion_tokens=4000))  # fmt: skip
    out = engine.process_lines(lines)
    out.extend(engine.flush())
    farming = [a for a in out.alerts if a.category == "free_tier_farming"]
    assert farming and {a.account_id for a in farming} == {"forged_account"}
    table = engine.table
    assert table.collisions == 1 and len(table) == 2
    assert engine.metrics.registry.get_sample_value("vigil_account_code_collisions_total") == 1
    victim = table.ids.index("acct_000141")
    assert table.plan[victim] == 3  # enterprise
    ips = decode_lines([line(ip="198.51.100.7")], now_ts=T0)[0].ip[0]
    assert ips in table.ip_ring[victim] and (table.ip_ring[victim] != 0).sum() == 1


def test_the_engine_gives_the_same_results_when_every_account_collides(
    small_corpus, weak_codes
) -> None:
    """A whole generated day through two engines: one with full codes, one where all
    accounts share four codes. Accounts, their histories and the alerts are the same."""
    events, _ = small_corpus
    lines = [ln for ln in gzip.decompress(events.read_bytes()).split(b"\n") if ln]
    results = []
    for bits in (64, 2):
        engine = Engine()
        weak_codes(bits)
        out = engine.process_lines(lines)
        out.extend(engine.flush())
        t = engine.table
        held = {t.ids[s]: s for s in t.index.values()}
        history = {a: (int(t.windows[s]), float(t.last_seen[s]), int(t.plan[s]),
                       sorted(t.ip_ring[s].tolist())) for a, s in held.items()}  # fmt: skip
        alerts = sorted((a.account_id, a.category, a.ts) for a in out.alerts)
        results.append((history, alerts, t.collisions))
    (full_hist, full_alerts, none), (weak_hist, weak_alerts, moved) = results
    assert none == 0 and moved > 100
    # Codes differ between the modes, so compare the IP rings by the events' own IPs.
    assert full_hist.keys() == weak_hist.keys()
    assert {a: h[:3] for a, h in full_hist.items()} == {a: h[:3] for a, h in weak_hist.items()}
    assert full_alerts == weak_alerts and full_alerts


def test_alternative_codes_are_odd_and_differ_by_identity() -> None:
    alts = {next_code(1, k) for k in range(1, 10_001, 2)}
    assert len(alts) == 5000 and all(c & 1 for c in alts)
    assert next_code(1, 3) == next_code(1, 3) != next_code(3, 3)
    assert np.uint64(next_code(2**64 - 1, 2**64 - 1)) > 0
