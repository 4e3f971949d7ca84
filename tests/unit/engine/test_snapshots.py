"""Account snapshots: built only when asked for, and showing the values behind the codes."""

from __future__ import annotations

import gzip
from collections import defaultdict

import numpy as np
import orjson

from streams.contract.codes import subnet_of
from streams.engine.engine import Engine
from streams.engine.snapshots import LIST_LIMIT, LatestSnapshots, latest, materialise

LIST_FIELDS = (
    ("ips", "ip"),
    ("countries", "country"),
    ("user_agents", "user_agent"),
    ("api_keys", "api_key_id"),
    ("prompt_hashes", "prompt_hash"),
)


def _windows(events_path, n_batches: int = 12):
    lines = [ln for ln in gzip.decompress(events_path.read_bytes()).split(b"\n") if ln]
    eng = Engine(emit_snapshots=True)
    windows = []
    for i in range(0, min(len(lines), 4096 * n_batches), 4096):
        windows += eng.process_lines(lines[i : i + 4096]).snapshots
    return lines, windows


def test_snapshot_lists_are_the_values_seen_in_the_window(small_corpus) -> None:
    lines, windows = _windows(small_corpus[0])
    sent: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for ln in lines[: 4096 * 12]:
        e = orjson.loads(ln)
        for key, field in LIST_FIELDS:
            if e.get(field):
                sent[e["account_id"]][key].add(e[field])
    snaps = materialise(windows)
    assert len(snaps) > 100
    for snap in snaps:
        assert snap["window_start"] < snap["window_end"]
        for key, _ in LIST_FIELDS:
            values = snap[key]
            assert values == sorted(values) and len(values) <= LIST_LIMIT and all(values)
            # Every listed value was really sent by that account.
            assert set(values) <= sent[snap["account_id"]][key], key
        if len(snap["ips"]) < LIST_LIMIT:
            assert snap["subnets"] == sorted({subnet_of(ip) for ip in snap["ips"]})
        assert (
            snap["features"]["distinct_ips"] == len(snap["ips"]) or len(snap["ips"]) == LIST_LIMIT
        )


def test_rows_on_demand_equal_the_full_build(small_corpus) -> None:
    _, windows = _windows(small_corpus[0], n_batches=4)
    w = next(w for w in windows if len(w) > 5)
    everything = w.rows()
    assert len(everything) == len(w)
    assert w.rows([4, 1]) == [everything[4], everything[1]]


def test_latest_keeps_one_snapshot_per_account_from_its_last_window(small_corpus) -> None:
    _, windows = _windows(small_corpus[0], n_batches=4)
    picks = {}
    for w in windows:
        for i, acct in enumerate(w.batch.account_ids.tolist()):
            picks[acct] = (w, i)
    out = dict(latest(picks))
    assert set(out) == set(picks)
    for acct, snap in out.items():
        w, i = picks[acct]
        assert snap == w.rows([i])[0]
        assert snap["account_id"] == acct


def test_a_subset_holds_only_its_accounts_events_and_builds_the_same_rows(small_corpus) -> None:
    _, windows = _windows(small_corpus[0], n_batches=4)
    w = next(w for w in windows if len(w) > 20)
    which = [2, 7, 8, len(w) - 1]
    sub = w.subset(np.asarray(which))
    assert sub.rows() == w.rows(which)
    mine = set(w.batch.account_ids[which].tolist())
    assert 0 < len(sub.events) < len(w.events)
    assert {str(a) for a in sub.events.texts(range(len(sub.events)), "account_id")} == mine


def test_the_latest_holder_lets_old_windows_go_and_sends_the_same(small_corpus) -> None:
    _, windows = _windows(small_corpus[0])
    assert len(windows) > 3
    holder, picks = LatestSnapshots(max_windows=2), {}
    for w in windows:
        holder.add(w)
        for i, acct in enumerate(w.batch.account_ids.tolist()):
            picks[acct] = (w, i)
        assert len(holder.windows) <= 2
    # Accounts last seen in a window that was let go point into a smaller copy of it.
    held = {id(w) for w, _ in holder.picks.values()}
    assert held - {id(w) for w in windows}
    assert sum(len(w.events) for w in windows) > 2 * sum(
        len(w.events) for w in {id(w): w for w, _ in holder.picks.values()}.values()
    )
    assert sorted(latest(holder.detach())) == sorted(latest(picks))
    assert len(holder) == 0 and not holder.windows


def test_accounts_without_optional_fields_get_empty_lists() -> None:
    """Regression: a window whose accounts sent no IP (or no other listed field) made the
    snapshot build fail, and with it the Kafka worker's checkpoint."""
    from tests.events_util import T0, line

    bare = [
        line(ip=..., user_agent=..., api_key_id=..., country=..., prompt_hash=..., ts=T0 + i)
        for i in range(5)
    ]
    eng = Engine(emit_snapshots=True)
    windows = eng.process_lines(bare).snapshots + eng.flush().snapshots
    (snap,) = materialise(windows)
    assert snap["ips"] == snap["subnets"] == snap["user_agents"] == snap["api_keys"] == []
    assert snap["features"]["requests"] == 5
    assert latest({"acct_a": (windows[0], 0)}) == [("acct_a", snap)]
