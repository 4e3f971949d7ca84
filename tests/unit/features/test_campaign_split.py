"""Campaign signals worked out on P partitions with K key owners equal one engine's, exactly.

The single engine is the real one (CampaignState.update inside Engine); its inputs are
recorded per window, split by account as murmur2 places accounts on 8 partitions, each part
numbered in an order of its own, and the keys spread over 8 owners by a hash of (kind, key).
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from streams.features.campaign import CampaignState, misbehaving
from streams.features.campaign_index import KINDS
from streams.features.campaign_split import KeyOwner, Memberships, contributions, fill
from streams.features.window import COL
from streams.kafka.routing import partition_for
from tests.events_util import T0, line

P = K = 8


@dataclass
class Window:
    """One call of CampaignState.update: its inputs, and X and evidence after it."""

    window_end: float
    gid: np.ndarray
    order: np.ndarray
    account_ids: list[str]
    sources: dict[str, tuple[np.ndarray, np.ndarray]]
    texts: Any
    before: np.ndarray
    after: np.ndarray
    evidence: list[dict[str, Any] | None]


class Recording(CampaignState):
    """The engine's CampaignState, keeping every window's inputs and results."""

    def __init__(self, like: CampaignState) -> None:
        idx = like.index["subnet"]
        super().__init__(idx.horizon_s, idx.max_keys, like.free_daily_tokens)
        self.windows: list[Window] = []

    def update(
        self,
        window_end: float,
        gid: np.ndarray,
        order: np.ndarray,
        account_ids: list[str],
        sources: dict[str, tuple[np.ndarray, np.ndarray]],
        texts: Any,
        X: np.ndarray,
        col: dict[str, int],
    ) -> list[dict[str, Any] | None]:
        before = X.copy()
        evidence = super().update(window_end, gid, order, account_ids, sources, texts, X, col)
        src = {k: (c.copy(), u.copy()) for k, (c, u) in sources.items()}
        ids = list(account_ids)
        w = Window(
            window_end, gid.copy(), order.copy(), ids, src, texts, before, X.copy(), evidence
        )
        self.windows.append(w)
        return evidence


def _record(lines: list[bytes]) -> Recording:
    eng = Engine(VigilConfig(), detectors={})
    rec = eng.campaign = Recording(eng.campaign)
    for i in range(0, len(lines), 4096):
        eng.process_lines(lines[i : i + 4096])
    eng.flush()
    return rec


@pytest.fixture(scope="module")
def corpus(small_corpus) -> Recording:
    lines = [ln for ln in gzip.decompress(small_corpus[0].read_bytes()).split(b"\n") if ln]
    return _record(lines)


def _owner_of(kind: np.ndarray, code: np.ndarray) -> np.ndarray:
    return np.array(
        [
            partition_for(KINDS[k].encode() + int(c).to_bytes(8, "big"), K)
            for k, c in zip(kind.tolist(), code.tolist(), strict=True)
        ],
        dtype=np.int64,
    )


@dataclass
class Part:
    """One partition's view of a window: its accounts in an order of its own."""

    groups: np.ndarray  # its accounts' rows in the single engine's X, in its own order
    gid: np.ndarray
    order: np.ndarray
    events: np.ndarray  # its events' rows in the window, in their original order
    X: np.ndarray


def _parts(w: Window, rng: np.random.Generator) -> list[Part]:
    ev_group = np.empty_like(w.gid)
    ev_group[w.order] = w.gid
    where = np.array([partition_for(a.encode(), P) for a in w.account_ids], dtype=np.int64)
    parts = []
    for p in range(P):
        groups = rng.permutation(np.flatnonzero(where == p))  # slots differ between engines
        local = np.full(len(w.account_ids), -1)
        local[groups] = np.arange(len(groups))
        events = np.flatnonzero(where[ev_group] == p)
        pos = np.full(len(ev_group), -1)
        pos[events] = np.arange(len(events))
        s = w.order[where[w.gid] == p]  # by account, then time
        s = s[np.argsort(local[ev_group[s]], kind="stable")]
        parts.append(Part(groups, local[ev_group[s]], pos[s], events, w.before[groups].copy()))
    return parts


def _split_window(
    w: Window, owners: list[KeyOwner], free_daily_tokens: float, rng: np.random.Generator
) -> tuple[list[Part], list[list[dict[str, Any] | None]]]:
    """Contributions per part, routed to owners, applied, figures routed back, filled."""
    parts = _parts(w, rng)
    mine, inbox = [], [[] for _ in range(K)]
    for part in parts:
        src = {k: (c[part.events], u[part.events]) for k, (c, u) in w.sources.items()}
        ids = [w.account_ids[g] for g in part.groups]
        bad = misbehaving(part.X, COL, free_daily_tokens)
        m = contributions(w.window_end, part.gid, part.order, ids, src, bad)
        to = _owner_of(m.sent.kind, m.sent.code)
        for o in range(K):
            inbox[o].append(m.sent.take(np.flatnonzero(to == o)))
        mine.append(m)
    figures = {}
    for o, owner in enumerate(owners):  # every owner every window; sources in any order
        figures[o] = owner.apply(w.window_end, [inbox[o][i] for i in rng.permutation(P)])
    evidence = []
    for part, m in zip(parts, mine, strict=True):
        to = _owner_of(m.sent.kind, m.sent.code).tolist()
        refs = zip(m.sent.kind.tolist(), m.sent.code.tolist(), strict=True)
        back = {r: figures[o][r] for r, o in zip(refs, to, strict=True) if r in figures[o]}
        evidence.append(fill(part.X, COL, m, back, _texts(w, part.events)))
    return parts, evidence


def _texts(w: Window, events: np.ndarray) -> Any:
    """A part's `texts`: its rows are its own events, a subset of the window's."""
    return lambda rows, field: w.texts(events[rows], field)


def _members(owners: list[KeyOwner]) -> int:
    return sum(len(a) for o in owners for idx in o.index.values() for a in idx.members.values())


def _run_split(rec: Recording, restore_at: int = -1) -> dict[str, int]:
    """The recorded windows on P parts and K owners, checked row by row against the one
    engine; at `restore_at` every owner is rebuilt from its state_dict."""
    rng = np.random.default_rng(18)
    idx = rec.index["subnet"]

    def new() -> list[KeyOwner]:
        return [KeyOwner(idx.horizon_s, idx.max_keys) for _ in range(K)]

    owners = new()
    seen = {"windows": 0, "rows": 0, "evidence": 0, "cross": 0, "expired": 0}
    last = 0
    for n, w in enumerate(rec.windows):
        if n == restore_at:
            states = [pickle.loads(pickle.dumps(o.state_dict())) for o in owners]
            owners = new()
            for o, state in zip(owners, states, strict=True):
                o.load_state_dict(state)
        parts, evidence = _split_window(w, owners, rec.free_daily_tokens, rng)
        for part, ev in zip(parts, evidence, strict=True):
            for row, g in enumerate(part.groups.tolist()):
                assert np.array_equal(part.X[row], w.after[g], equal_nan=True), w.account_ids[g]
                assert ev[row] == w.evidence[g], w.account_ids[g]
                if ev[row] is not None:
                    seen["evidence"] += 1
                    parts_in = {partition_for(a.encode(), P) for a in ev[row]["accounts"]}
                    seen["cross"] += len(parts_in) > 1
        seen["windows"] += 1
        seen["rows"] += len(w.account_ids)
        now = _members(owners)
        seen["expired"] += now < last
        last = now
    return seen


def test_partitions_and_key_owners_equal_one_engine(corpus: Recording) -> None:
    seen = _run_split(corpus, restore_at=50)
    assert seen["windows"] >= 90 and seen["rows"] >= 10_000
    # The point: evidence whose group spans partitions, found as one engine finds it.
    assert seen["evidence"] >= 500 and seen["cross"] >= 0.5 * seen["evidence"]
    assert seen["expired"] >= 1  # the hourly expiry ran and dropped members on the way


def _full_key_lines() -> list[bytes]:
    """100 new accounts, ids in no order, on one client in window 0; then 20 more and
    the first 10 again in window 1."""
    ids = [f"bot{(k * 37) % 100:03d}" for k in range(100)]
    young = {"account_created": "2026-09-30T23:00:00Z", "user_agent": "farm/2"}
    lines = [line(ts=T0 + k, account_id=a, ip=f"203.0.{k}.9", **young) for k, a in enumerate(ids)]
    lines += [line(ts=T0 + 300 + k, account_id=f"late{k:02d}", ip=f"198.18.{k}.9", **young)
              for k in range(20)]  # fmt: skip
    lines += [line(ts=T0 + 400 + k, account_id=f"bot{k:03d}", ip=f"203.0.{k}.9", **young)
              for k in range(10)]  # fmt: skip
    return lines


def test_a_full_key_keeps_the_lowest_account_ids_on_partitions_too() -> None:
    rec = _record(_full_key_lines())
    assert len(rec.windows) == 2
    first, second = rec.windows
    ua = COL["ua_new_accounts"]
    assert set(first.after[:, ua].tolist()) == {64.0}  # capped, though 100 share it
    assert set(second.after[:, ua].tolist()) == {64.0}  # late ones are turned away
    late = [i for i, a in enumerate(second.account_ids) if a.startswith("late")]
    assert len(late) == 20 and all(second.evidence[i]["count"] == 64 for i in late)
    # Who got in depends on the ids alone, not on slots, sources or arrival order.
    listed = second.evidence[second.account_ids.index("bot000")]["accounts"]
    # The ten seen again come first, then the others in id order: the key holds bot000-063.
    assert listed == [f"bot{k:03d}" for k in range(25)]
    seen = _run_split(rec)
    assert seen["rows"] == 100 + 30


def test_memberships_from_any_source_order_give_the_same_owner() -> None:
    def m(accounts: list[str], bad: list[bool]) -> Memberships:
        n = len(accounts)
        return Memberships(
            T0, np.full(n, 1, np.int8), np.full(n, 99, np.uint64),
            np.array(accounts, dtype=object), np.ones(n, np.int64), np.array(bad),
        )  # fmt: skip

    a, b = m(["z", "b", "x"], [True, False, True]), m(["a", "y", "b"], [False, True, True])
    one, two = KeyOwner(3600, 10), KeyOwner(3600, 10)
    f1, f2 = one.apply(T0, [a, b]), two.apply(T0, [b.take(np.array([2, 0, 1])), a])
    assert f1 == f2
    assert list(one.index["ua"].members[99]) == ["a", "b", "x", "y", "z"]
    assert pickle.dumps(one.index["ua"].members) == pickle.dumps(two.index["ua"].members)
    # "b" came from two sources, misbehaving in one: one member, counted as misbehaving.
    assert f1[(1, 99)].count == 5 and f1[(1, 99)].bad == 4
    with pytest.raises(ValueError, match="window ending"):
        one.apply(T0 + 300, [a])


def test_a_prompt_sent_once_by_each_of_two_partitions_is_repeated() -> None:
    def m(account: str, window_end: float) -> Memberships:
        return Memberships(window_end, np.full(1, KINDS.index("prompt"), np.int8),
                           np.full(1, 7, np.uint64), np.array([account], dtype=object),
                           np.ones(1, np.int64), np.zeros(1, bool))  # fmt: skip

    owner = KeyOwner(3600, 10)
    assert owner.apply(T0, [m("a", T0)]) == {}  # once in the whole window: not indexed
    figures = owner.apply(T0 + 300, [m("a", T0 + 300), m("b", T0 + 300)])
    assert figures[(KINDS.index("prompt"), 7)].count == 2


def test_state_round_trip_mid_run_gives_the_same_windows(corpus: Recording) -> None:
    corpus_windows = corpus.windows
    half = 50  # not a whole number of hours: the hourly expiry must keep its phase

    def run(windows: list[Window], state: CampaignState) -> list[tuple[np.ndarray, list]]:
        out = []
        for w in windows:
            X = w.before.copy()
            ev = state.update(w.window_end, w.gid, w.order, w.account_ids, w.sources,
                              w.texts, X, COL)  # fmt: skip
            out.append((X, ev))
        return out

    whole = CampaignState()
    straight = run(corpus_windows, whole)
    first = CampaignState()
    run(corpus_windows[:half], first)
    restored = CampaignState()
    restored.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    again = run(corpus_windows[half:], restored)
    for (x1, e1), (x2, e2) in zip(straight[half:], again, strict=True):
        assert np.array_equal(x1, x2, equal_nan=True)
        assert e1 == e2
    assert _ordered(whole.state_dict()) == _ordered(restored.state_dict())
    # A state written before the window count rode along still loads, counting from 0.
    older = CampaignState()
    older.load_state_dict({k: v[:3] for k, v in first.state_dict().items()})
    assert older.owner._windows == 0 and older.index["ua"].members == first.index["ua"].members


def _ordered(state: dict) -> list:
    """The state with the order of every dict in it (the order decides who a full key keeps)."""
    if isinstance(state, dict):
        return [(k, _ordered(v)) for k, v in state.items()]
    if isinstance(state, tuple | list):
        return [_ordered(v) for v in state]
    return state
