"""The two-phase close (streams/engine/exchange.py): 8 engines on murmur2 partitions with 8
owners of campaign keys alert the accounts one engine alerts on the whole corpus; finishing
order, restores and a single engine with the option change nothing."""

from __future__ import annotations

import dataclasses
import gzip
import pickle

import numpy as np
import pytest

from streams.contract.events import decode_lines
from streams.core.alerts import Alert
from streams.core.config import VigilConfig
from streams.engine.budget import array_bytes, batch_bytes
from streams.engine.engine import Engine
from streams.kafka import checkpoint
from tests.events_util import T0
from tests.unit.engine.exchange_driver import BATCH, Split, by_category, run_split, run_whole
from tests.unit.engine.test_budget import BUDGET, _ts, flood

CAMPAIGNS = ("credential_stuffing", "free_tier_farming", "spam_campaign")


@pytest.fixture(scope="module")
def lines(small_corpus) -> list[bytes]:
    return [ln for ln in gzip.decompress(small_corpus[0].read_bytes()).split(b"\n") if ln]


@pytest.fixture(scope="module")
def whole(lines: list[bytes]) -> list[Alert]:
    return run_whole(lines)


@pytest.fixture(scope="module")
def split(lines: list[bytes]) -> Split:
    return run_split(lines)


def _pairs(alerts: list[Alert]) -> set[tuple[str, str]]:
    return {(a.account_id, a.category) for a in alerts}


def _by_window(alerts: list[Alert]) -> dict[tuple[str, str, str], Alert]:
    return {(a.account_id, a.category, a.window["end"]): a for a in alerts}


def test_eight_partitions_with_the_exchange_alert_what_one_engine_alerts(
    whole: list[Alert], split: Split
) -> None:
    # The campaigns are there, on one engine, spread over partitions.
    cats = by_category(whole)
    assert all(len(cats[c]) >= 2 for c in CAMPAIGNS), {c: len(cats[c]) for c in CAMPAIGNS}
    assert _pairs(split.alerts) == _pairs(whole)
    # Alert by alert: the population detector learns on each engine's accounts only, so
    # its scores differ; measured here, and small enough to change no alert.
    one, eight = _by_window(whole), _by_window(split.alerts)
    assert one.keys() == eight.keys()
    moved = 0
    for key, a in one.items():
        b = eight[key]
        sa = {d.name: d.score for d in a.detectors}
        sb = {d.name: d.score for d in b.detectors}
        assert sa.keys() - {"population"} == sb.keys() - {"population"}, key
        for name in sa.keys() & sb.keys():
            if name != "population":
                assert sa[name] == pytest.approx(sb[name], abs=1e-9), (key, name)
        assert a.related_accounts == b.related_accounts, key
        if abs(a.score - b.score) > 1e-9:  # only where the population saw it otherwise
            assert sa.get("population") != sb.get("population"), key
            moved += 1
    assert moved <= 0.1 * len(one)
    # Windows were begun while earlier ones were held, and every one was completed.
    assert split.most_held >= 2
    assert split.completed == split.requests
    assert all(not e.held and not e._ready for e in split.engines)


def test_a_restore_of_every_engine_and_owner_mid_run_changes_no_alert(
    lines: list[bytes], split: Split
) -> None:
    restored = run_split(lines, restore_at=len(lines) // BATCH // 2)
    assert [a.to_dict() for a in restored.alerts] == [a.to_dict() for a in split.alerts]
    # The restored engines held windows the owners had applied: they sent them again.
    assert restored.duplicates > 0


def test_a_restore_from_checkpoints_with_journals_changes_no_alert(
    lines: list[bytes], split: Split
) -> None:
    """As the worker checkpoints: held windows without their events, which the journal
    segments keep until the windows are scored."""
    restored = run_split(lines, restore_at=len(lines) // BATCH // 2, journal=True)
    assert restored.restored_without_events > 0, "the restore must find held windows"
    assert [a.to_dict() for a in restored.alerts] == [a.to_dict() for a in split.alerts]


def test_a_journal_missing_a_held_windows_events_is_refused(lines: list[bytes]) -> None:
    split = Split(journal=True)
    split.feed(lines[:BATCH], complete=False)
    split.feed(lines[BATCH : 3 * BATCH], complete=False)
    i = next(i for i, e in enumerate(split.engines) if e.held)
    state, _, journal = checkpoint.read(split.tables[i], "t", i)
    held = split.engines[i].held[0]
    assert all(h.ev is None for h in state["exchange"]["held"])
    # One event of the oldest held window is missing from the journal.
    ts = decode_lines(journal, np.inf)[0].ts  # every journal line is an accepted event
    drop = int(np.flatnonzero((ts >= held.start) & (ts < held.end))[0])
    fresh = Engine(VigilConfig(), detectors=None, campaign_exchange=True)
    fresh.load_state_dict(state)
    with pytest.raises(ValueError, match=r"journal holds \d+ events of the window .* held"):
        fresh.restore_pending(journal[:drop] + journal[drop + 1 :])
    whole = Engine(VigilConfig(), detectors=None, campaign_exchange=True)
    whole.load_state_dict(checkpoint.read(split.tables[i], "t", i)[0])
    whole.restore_pending(journal)
    assert np.array_equal(whole.held[0].ev.event_id, held.ev.event_id)
    assert whole.held[0].ev.raw.tolist() == held.ev.raw.tolist()


def test_unscored_bytes_follow_the_events_from_buffered_to_scored(lines: list[bytes]) -> None:
    """What the worker's byte bound reads: open windows as buffered, held ones at the mean
    event size, nothing once every window is scored."""
    split = Split()
    split.feed(lines[:BATCH], complete=False)
    split.feed(lines[BATCH : 3 * BATCH], complete=False)
    engine = next(e for e in split.engines if e.held)
    held = sum(len(h.ev) for h in engine.held) + sum(len(ev) for ev, _, _ in engine._ready)
    open_bytes = sum(batch_bytes(b) for b in engine.pending)
    walked = open_bytes + sum(batch_bytes(h.ev) for h in engine.held)
    walked += sum(batch_bytes(ev) for ev, _, _ in engine._ready)
    assert held > 0 and engine.unscored_bytes > open_bytes
    assert abs(engine.unscored_bytes - walked) < 0.2 * walked
    split.pump()
    assert not engine.held
    assert engine.unscored_bytes == sum(batch_bytes(b) for b in engine.pending)


def _held_chunks(table, i: int) -> int:
    return sum(k.startswith(f"p{i}/h".encode()) for k in table)


def test_each_held_window_is_written_once_until_it_is_scored(lines: list[bytes]) -> None:
    """Held windows go into held segments, each window in one, and not into the state
    blob; the segments go once their windows are scored, and a restore puts them back."""
    split = Split(journal=True)
    for k in range(4):  # four checkpoints while the windows stay held
        split.feed(lines[k * BATCH : (k + 1) * BATCH], complete=False)
    held_now = sum(len(e.held) for e in split.engines)
    assert split.held_written == held_now, "a held window was written twice"
    i = max(range(split.p), key=lambda i: len(split.engines[i].held))
    engine, table = split.engines[i], split.tables[i]
    manifest = checkpoint.read_manifest(table, "t", i)
    assert len(manifest.held) >= 2, "the windows must have been held over checkpoints"
    assert [end for _, _, ends in manifest.held for end in ends] == [h.end for h in engine.held]
    assert _held_chunks(table, i) == sum(n for _, n, _ in manifest.held)
    state, _, _ = checkpoint.read(table, "t", i)
    restored = state["exchange"]["held"]
    assert [h.end for h in restored] == [h.end for h in engine.held]
    for got, was in zip(restored, engine.held, strict=True):
        assert got.ev is None and np.array_equal(got.batch.X, was.batch.X)
        assert np.array_equal(got.mine.sent.code, was.mine.sent.code)
    # Scored, then checkpointed: no held segment is left.
    split.pump()
    split.feed(lines[4 * BATCH : 5 * BATCH])
    manifest = checkpoint.read_manifest(table, "t", i)
    assert [end for _, _, ends in manifest.held for end in ends] == [h.end for h in engine.held]
    assert _held_chunks(table, i) == sum(n for _, n, _ in manifest.held)


def test_a_checkpoint_naming_a_held_window_no_segment_stores_is_refused(
    lines: list[bytes],
) -> None:
    split = Split(journal=True)
    split.feed(lines[:BATCH], complete=False)
    split.feed(lines[BATCH : 3 * BATCH], complete=False)
    i = next(i for i, e in enumerate(split.engines) if e.held)
    table = split.tables[i]
    manifest = checkpoint.read_manifest(table, "t", i)
    manifest.held = manifest.held[1:]  # the oldest segment is not named any more
    table[checkpoint.manifest_key(i)] = manifest.to_bytes()
    with pytest.raises(RuntimeError, match=r"window\(s\) waiting for campaign figures"):
        checkpoint.read(table, "t", i)


def test_one_engine_with_the_exchange_is_the_engine_without_it(
    lines: list[bytes], whole: list[Alert]
) -> None:
    one = run_split(lines, p=1, k=1)
    assert [a.to_dict() for a in one.alerts] == [a.to_dict() for a in whole]
    eng = Engine(VigilConfig())
    for i in range(0, len(lines), BATCH):
        eng.process_lines(lines[i : i + BATCH])
    eng.flush()
    a, b = eng.state_dict(), one.engines[0].state_dict()
    assert b.pop("exchange")["windows_begun"] == a["windows_closed"] == b["windows_closed"]
    assert pickle.dumps(a["detectors"]) == pickle.dumps(b["detectors"])
    assert pickle.dumps(a["table"]) == pickle.dumps(b["table"])


def _regular(n: int, offset_s: float = 0.0) -> list[bytes]:
    """One account with an event every 15 s: it is never idle."""
    return [
        b'{"event_id":"r%d","ts":%.1f,"account_id":"regular","endpoint":"chat.completions"}'
        % (k, T0 + offset_s + 15 * k)
        for k in range(n)
    ]


def _budget_engine() -> Engine:
    cfg = VigilConfig()
    # Both evictions: the budget's at each begin, the hourly one past max_accounts.
    e = dataclasses.replace(cfg.engine, state_budget_bytes=BUDGET, max_accounts=3000)
    return Engine(
        dataclasses.replace(cfg, engine=e), clock=lambda: T0 + 10 * 86_400, campaign_exchange=True
    )


def test_finishing_order_changes_nothing_when_accounts_are_evicted() -> None:
    """Accounts evicted at a begin while older windows are held reach the detectors only
    after those are scored, and no window begins before the hourly eviction ahead of it:
    completing windows late or at once gives the same state."""
    evs = sorted(flood(40_000) + flood(20_000, start=40_000, t0=T0 + 3600) + _regular(480), key=_ts)

    def run(lag: int) -> Split:
        s = Split(p=1, k=1, make_engine=_budget_engine)
        for n, i in enumerate(range(0, len(evs), BATCH)):
            s.feed(evs[i : i + BATCH], complete=n % lag == 0)
        s.flush()
        return s

    eager, late = run(1), run(5)
    assert late.most_held > eager.most_held >= 1
    e, l_ = eager.engines[0], late.engines[0]
    assert e.budget_evicted > 0 and e.budget_evicted == l_.budget_evicted
    hourly = e.metrics.accounts_evicted._value.get()
    assert hourly > 0 and hourly == l_.metrics.accounts_evicted._value.get()
    assert pickle.dumps(e.state_dict()["detectors"]) == pickle.dumps(l_.state_dict()["detectors"])
    assert pickle.dumps(e.cooldowns.state_dict()) == pickle.dumps(l_.cooldowns.state_dict())
    assert [a.to_dict() for a in eager.alerts] == [a.to_dict() for a in late.alerts]
    # The baseline kept no row for an account the table let go.
    base = e.detectors["baseline"]
    held = {e.table.codes[s] for s in e.table.index.values()}
    assert set(base.rows.index) <= held


def test_only_the_oldest_held_window_can_be_completed(lines: list[bytes]) -> None:
    eng = Engine(VigilConfig(), campaign_exchange=True)
    out = eng.process_lines(lines[:BATCH])
    out.extend(eng.process_lines(lines[BATCH : 2 * BATCH]))
    assert len(eng.held) >= 2 and out.campaign_requests
    assert [w for w, _ in out.campaign_requests] == [h.end for h in eng.held]
    with pytest.raises(ValueError, match="is not the oldest held"):
        eng.complete_window(eng.held[1].end, {})
    # A plain engine's checkpoint cannot take held windows.
    plain = Engine(VigilConfig())
    with pytest.raises(ValueError, match="campaign_exchange"):
        plain.load_state_dict(eng.state_dict())
    # An engine restored from it has them, and sends their requests again.
    again = Engine(VigilConfig(), campaign_exchange=True)
    again.load_state_dict(pickle.loads(pickle.dumps(eng.state_dict())))
    first = again.set_source_watermark(None)
    assert [w for w, _ in first.campaign_requests][: len(eng.held)] == [h.end for h in eng.held]
    assert np.array_equal(first.campaign_requests[0][1].code, eng.held[0].mine.sent.code)


def test_an_engine_says_when_it_waits_for_figures(lines: list[bytes]) -> None:
    """The worker commits sooner under exactly_once while this holds (persistence.py)."""
    eng = Engine(VigilConfig(), campaign_exchange=True)
    assert not eng.awaiting_figures
    for i in range(0, len(lines), BATCH):
        eng.process_lines(lines[i : i + BATCH])
    assert eng.held and eng.awaiting_figures
    # What the worker's backpressure counts: held windows and those waiting behind them.
    assert eng.unscored_windows == len(eng.held) + len(eng._ready) >= 1
    while eng.held:
        before = eng.unscored_windows
        eng.complete_window(eng.held[0].end, {})
        assert eng.unscored_windows == before - 1
    assert not eng.awaiting_figures and eng.unscored_windows == 0


def test_windows_after_the_hourly_one_begin_while_it_is_held() -> None:
    """Regression (2026-12-04): the hourly upkeep ran when its window was completed, and no
    later window began before that; under exactly_once, where every step of the exchange
    waits for a commit, that emptied the worker's pipeline every hour of event time. It
    now runs at the begin, so three hours of windows all begin with none completed, and
    its eviction still reaches the detectors only once its window is scored."""
    cfg = VigilConfig()
    e = dataclasses.replace(cfg.engine, account_ttl_s=1800)
    eng = Engine(dataclasses.replace(cfg, engine=e), campaign_exchange=True)
    # 50 accounts seen in the first minute only: idle past the TTL at the hour.
    eng.process_lines(flood(50, span_s=50) + _regular(3 * 240, offset_s=60))
    assert len(eng.held) >= 30 and not eng._ready
    hourly = [h for h in eng.held if h.evicted is not None]
    assert len(hourly) >= 2
    # The table let the early accounts go at the first hourly begin; the detectors still
    # know them until that window is scored.
    gone = hourly[0].evicted
    assert len(gone) == 50
    assert eng.metrics.accounts_evicted._value.get() == 50
    base = eng.detectors["baseline"]
    while eng.held and eng.held[0] is not hourly[0]:
        eng.complete_window(eng.held[0].end, {})
    assert set(gone.tolist()) <= set(base.rows.index)
    eng.complete_window(eng.held[0].end, {})
    assert not set(gone.tolist()) & set(base.rows.index)


def test_a_restored_engine_counts_the_detectors_arrays_it_loaded() -> None:
    """Regression (2026-12-04): the budget's count of the detectors' arrays was that of the
    empty detectors an engine is built with, until an hourly recount; under the exchange
    nothing recounts them any more, so a restore must."""
    lines = flood(3000, span_s=2400)  # past the table's first capacity: the arrays grow
    eng = Engine(VigilConfig(), campaign_exchange=True)
    for i in range(0, len(lines), BATCH):
        eng.process_lines(lines[i : i + BATCH])
        while eng.held:
            eng.complete_window(eng.held[0].end, {})
    again = Engine(VigilConfig(), campaign_exchange=True)
    empty = again._detector_bytes
    again.load_state_dict(pickle.loads(pickle.dumps(eng.state_dict())))
    assert again._detector_bytes == array_bytes(again.detectors) > empty
    # ... and so does what the budget reads: the accounts' arrays, the table's and theirs.
    assert again.usage().account_arrays == eng.usage().account_arrays
