"""Engine memory bounded in bytes: what is counted, and the policy at the budget."""

from __future__ import annotations

import dataclasses
import io
import sys
import tracemalloc

import numpy as np
import pytest

from detectors.baseline import BaselineDetector
from streams.contract.events import EventBatch
from streams.core.config import ConfigError, VigilConfig
from streams.core.config_load import config_from_dict
from streams.engine.budget import OPEN_WINDOW_SHARE, batch_bytes
from streams.engine.engine import Engine
from streams.features.state import AccountTable
from streams.replay.reader import replay
from tests.events_util import T0

BUDGET = 24 * 1024**2


def flood(
    n: int,
    start: int = 0,
    t0: float = T0,
    span_s: float = 3600.0,
    pad: int = 0,
    id_pad: int = 0,
) -> list:
    """n events, each from a new account, spread over span_s seconds in time order; `pad`
    bytes in a field the contract ignores, `id_pad` more bytes in each account id (the
    contract caps ids at 256 bytes)."""
    out = []
    for i in range(start, start + n):
        ts = t0 + span_s * (i - start) / n
        out.append(
            b'{"event_id":"f%d","ts":%.3f,"account_id":"new_%07d%s","endpoint":"chat.completions",'
            b'"prompt_tokens":20,"completion_tokens":10,"ip":"%d.%d.%d.%d","country":"US",'
            b'"user_agent":"client/%d","plan":"free","account_created":%.0f,"meta":"%s"}'
            % (i, ts, i, b"x" * id_pad, *_scattered_ip(i), i, ts - 60, b"x" * pad)
        )
    return out


def _scattered_ip(i: int) -> tuple[int, int, int, int]:
    """An address per account, spread so that few accounts share a /24: this flood is
    about memory, not about the campaign signals that shared blocks would raise."""
    h = (i * 2654435761 + 12345) % (1 << 32)
    return h >> 24, h >> 16 & 255, h >> 8 & 255, h & 255


def _ts(line: bytes) -> float:
    return float(line.split(b'"ts":')[1].split(b",")[0])


def _engine(budget: int, **engine) -> Engine:
    cfg = VigilConfig()
    e = dataclasses.replace(cfg.engine, state_budget_bytes=budget, **engine)
    return Engine(dataclasses.replace(cfg, engine=e), clock=lambda: T0 + 10 * 86_400)


def test_the_budget_is_validated_with_one_clear_message() -> None:
    with pytest.raises(ConfigError, match="engine.state_budget_bytes: 1000 is below"):
        config_from_dict({"engine": {"state_budget_bytes": 1000}})
    assert config_from_dict({"engine": {"state_budget_bytes": 256 * 1024**2}})


def test_a_flood_of_new_accounts_stays_within_the_budget_and_evicts_the_idlest() -> None:
    eng = _engine(BUDGET)
    # A regular account, active in every window, then a flood of one-off new accounts.
    regular = [
        b'{"event_id":"r%d","ts":%.1f,"account_id":"regular","endpoint":"chat.completions"}'
        % (k, T0 + 15 * k)
        for k in range(240)
    ]
    lines = sorted(flood(60_000) + regular, key=_ts)
    peak = 0
    for k in range(0, len(lines), 4096):
        eng.process_lines(lines[k : k + 4096])
        peak = max(peak, eng.usage().total)
    out = eng.flush()
    assert peak <= BUDGET
    assert eng.usage().total <= BUDGET
    assert eng.budget_evicted > 0 and not out.dead_letters
    assert eng.metrics.budget_evicted._value.get() == eng.budget_evicted
    # The regular account was never the idlest, so it kept its history.
    assert "regular" in [eng.table.ids[s] for s in eng.table.index.values()]
    slot = next(s for s in eng.table.index.values() if eng.table.ids[s] == "regular")
    assert eng.table.windows[slot] == 12
    # The oldest flood accounts went first; the newest are still held.
    ids = {eng.table.ids[s] for s in eng.table.index.values()}
    assert "new_0000000" not in ids and "new_0059999" in ids
    # The table's arrays and the baseline's grew no further than the budget allows.
    base = eng.detectors["baseline"]
    assert isinstance(base, BaselineDetector)
    assert base.series.capacity == eng.table.capacity < 60_000


def test_evicted_slots_are_reset_in_the_detectors_that_hold_per_account_state() -> None:
    eng = _engine(BUDGET)
    base = eng.detectors["baseline"]
    first = flood(5_000)
    for k in range(0, len(first), 4096):
        eng.process_lines(first[k : k + 4096])
    eng.flush()
    assert eng.budget_evicted == 0
    touched = np.flatnonzero(base.series._slot[:, 0] != 0)
    assert len(touched)
    later = flood(20_000, start=5_000, t0=T0 + 7200)
    for k in range(0, len(later), 4096):
        eng.process_lines(later[k : k + 4096])
    eng.flush()
    assert eng.budget_evicted > 0
    held = set(eng.table.index.values())
    # Every slot not held (evicted, free again) has no baseline state left behind.
    free = np.array(sorted(set(range(eng.table.capacity)) - held), dtype=np.int64)
    assert len(free) == 0 or not np.any(base.series._slot[free] != 0)


def test_long_account_ids_count_against_the_budget() -> None:
    eng = _engine(BUDGET)
    lines = flood(12_000, id_pad=240)  # ids at the contract's 256-byte cap
    for k in range(0, len(lines), 500):
        eng.process_lines(lines[k : k + 500])
        assert eng.usage().total <= BUDGET
    eng.flush()
    assert eng.budget_evicted > 0
    assert eng.table.id_bytes == sum(
        sys.getsizeof(eng.table.ids[s]) for s in eng.table.index.values()
    )


def test_open_windows_are_bounded_and_their_late_events_dead_lettered() -> None:
    eng = _engine(BUDGET, window_s=3600, allowed_lateness_s=3600)
    lines = flood(20_000, span_s=1800, pad=400)  # one window, ~10 MB of open events
    read = 0
    for k in range(0, len(lines), 2000):
        eng.process_lines(lines[k : k + 2000])
        read += 2000
        assert eng._open_bytes <= BUDGET * OPEN_WINDOW_SHARE
    assert eng.windows_forced > 0
    late = eng.process_lines(flood(10, start=90_000, t0=T0 + 10))
    assert [d.reason for d in late.dead_letters] == ["too_late"] * 10
    eng.flush()
    m = eng.metrics
    assert m.budget_windows_forced._value.get() == eng.windows_forced
    # Nothing uncounted: what the forced close did not take went to dead letters.
    late_total = m.events_rejected.labels("too_late")._value.get()
    assert late_total >= 10
    assert m.events_processed._value.get() + late_total == read + 10
    assert m.processed_count == m.events_processed._value.get()  # what /health reports


def test_open_window_bytes_count_the_raw_lines() -> None:
    eng = _engine(BUDGET)
    eng.process_lines(flood(100, pad=1000, span_s=10))
    assert eng._open_bytes == batch_bytes(eng.pending[0]) > 100 * 1000
    assert eng.metrics.state_budget._value.get() == BUDGET


def test_open_window_bytes_stay_exact_as_windows_close_part_of_each_batch() -> None:
    eng = _engine(BUDGET, window_s=300, allowed_lateness_s=0)
    eng.set_source_watermark(-np.inf)
    lines = flood(3000, span_s=3600, pad=200)
    for k in range(0, len(lines), 700):  # batches straddle window boundaries
        eng.process_lines(lines[k : k + 700])
    assert len(eng.pending) > 1
    for mark in (T0 + 950, T0 + 1000, T0 + 2400):
        eng.set_source_watermark(mark)
        assert eng.pending and min(float(b.ts.min()) for b in eng.pending) >= eng.closed_until
        assert eng._open_bytes == batch_bytes(EventBatch.concat(eng.pending))


def test_the_replay_summary_counts_what_the_budget_evicted() -> None:
    eng = _engine(BUDGET)
    summary = replay(eng, io.BytesIO(b"\n".join(flood(60_000))), lambda out: None)
    assert summary.budget_evicted == eng.budget_evicted > 0


def test_the_per_account_figure_matches_what_python_allocates() -> None:
    """The account bytes the engine reports are within 15% of what tracemalloc sees."""
    n = 100_000
    table = AccountTable(n)  # arrays already sized: what is measured is per held account
    codes = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(2654435761)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # The ids are made here, as the engine reads them from new accounts' raw lines.
    table.slots_for(codes, lambda rows: [f"acct_{r:07d}" for r in rows.tolist()])
    grew = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    from streams.engine.budget import table_held_bytes

    counted = table_held_bytes(table)
    assert counted == pytest.approx(grew, rel=0.15), (counted, grew)


def test_dedup_ids_and_windows_too_big_for_the_budget_stay_within_it() -> None:
    budget = 16 * 1024**2  # dedup share 2 MiB: about 60k ids at the tables' load
    eng = _engine(budget, dedup_horizon_s=86_400)
    lines = flood(200_000, span_s=600)
    for k in range(0, len(lines), 8192):
        eng.process_lines(lines[k : k + 8192])
        assert eng.usage().dedup <= budget // 8
        assert eng.usage().total <= budget
    assert eng.dedup_turned_early > 0
    # 100k new accounts a window, more than the budget holds: scored in parts.
    assert eng.windows_split > 0 and eng.metrics.budget_windows_split._value.get() > 0
    assert eng.metrics.budget_dedup_turned._value.get() == eng.dedup_turned_early
    # The newest ids are still remembered: a replayed event is a duplicate.
    eng.process_lines(lines[-10:])
    assert eng.metrics.events_duplicate._value.get() == 10
