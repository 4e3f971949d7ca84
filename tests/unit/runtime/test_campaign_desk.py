"""The desk of one key owner: windows applied in order once every source sent or passed
them, answers to every source, a re-sent request answered again, figures dropped once
every source completed past them."""

from __future__ import annotations

import pickle

import numpy as np
from aiokafka.partitioner import murmur2

from streams.features.campaign_index import KINDS
from streams.features.campaign_split import KeyFigures, Memberships
from streams.runtime.campaign_desk import Answers, Desk, figures_for, murmur2_rows, owner_of

W = 300.0


def members(w: float, accounts: list[str], code: int = 7, kind: int = 0) -> Memberships:
    n = len(accounts)
    account = np.empty(n, object)
    account[:] = accounts
    return Memberships(
        w,
        np.full(n, kind, np.int8),
        np.full(n, code, np.uint64),
        account,
        np.ones(n, np.int64),
        np.zeros(n, bool),
    )


def test_a_window_waits_for_every_source_then_each_gets_its_keys() -> None:
    desk = Desk(3600.0, 10_000, sources=3)
    assert desk.request(W, 0, members(W, ["a", "b"])) == []
    assert desk.request(W, 1, members(W, ["c"], code=9)) == []
    assert desk.progress(2, passed=0.0, done=-np.inf) == []  # source 2 not past W yet
    answers = desk.progress(2, passed=W, done=-np.inf)
    by_source = {s: (w, set(f)) for s, w, f in answers}
    assert by_source == {0: (W, {(0, 7)}), 1: (W, {(0, 9)}), 2: (W, set())}
    figures = dict(answers[0][2])
    assert figures[(0, 7)].count == 2
    # A restored source sends its request again: the same figures, once more, to it only.
    again = desk.request(W, 0, members(W, ["a", "b"]))
    assert [(s, w) for s, w, _ in again] == [(0, W)] and again[0][2] == figures
    assert desk.duplicates == 1


def test_windows_apply_in_order_and_figures_go_once_all_completed() -> None:
    desk = Desk(3600.0, 10_000, sources=2)
    desk.request(W, 0, members(W, ["a"]))
    desk.request(2 * W, 0, members(2 * W, ["a"]))
    answers = desk.progress(1, passed=2 * W, done=-np.inf)
    assert [w for _, w, _ in answers] == [W, W, 2 * W, 2 * W]
    desk.progress(0, passed=2 * W, done=2 * W)
    assert set(desk.applied) == {W, 2 * W}  # source 1 has not completed W yet
    desk.progress(1, passed=2 * W, done=2 * W)
    assert set(desk.applied) == {2 * W}
    assert desk.request(W, 0, members(W, ["a"])) == [] and desk.stale == 1


def test_desk_state_round_trips_through_pickle() -> None:
    desk = Desk(3600.0, 10_000, sources=2)
    desk.request(W, 0, members(W, ["a", "b"]))
    copy = Desk(3600.0, 10_000, sources=2)
    copy.load_state_dict(pickle.loads(pickle.dumps(desk.state_dict())))
    assert copy.progress(1, W, -np.inf) == desk.progress(1, W, -np.inf)


def test_answers_complete_once_every_owner_answered() -> None:
    got = Answers(2)
    a = members(W, ["a", "b"])
    figures = Desk(3600.0, 100).owner.apply(W, [a])
    got.add(0, W, figures)
    assert got.complete(W) is None
    got.add(1, W, {})
    assert got.complete(W) == figures
    got.drop_until(W)
    assert got.got == {}


def test_owners_spread_keys_and_agree_with_themselves() -> None:
    kind = np.zeros(200, np.int8)
    code = np.arange(200, dtype=np.uint64)
    to = owner_of(kind, code, 8)
    assert set(to.tolist()) == set(range(8))
    assert (owner_of(kind, code, 8) == to).all()


def test_owners_are_kafka_s_murmur2_of_kind_and_key_hashed_a_kind_at_a_time():
    # The vectorised hash must give aiokafka's murmur2 for every key length (the tail bytes
    # take their own branches), and the owners the per-key formula they replaced.
    rng = np.random.default_rng(3)
    for length in range(20):
        keys = rng.integers(0, 256, (200, length), dtype=np.uint8)
        assert murmur2_rows(keys).tolist() == [murmur2(bytes(r)) for r in keys]
    kind = rng.integers(0, len(KINDS), 3000)
    code = rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64)  # codes are unsigned
    want = [
        (murmur2(KINDS[i].encode() + int(c).to_bytes(8, "big")) & 0x7FFFFFFF) % 8
        for i, c in zip(kind.tolist(), code.tolist(), strict=True)
    ]
    assert owner_of(kind, code, 8).tolist() == want


def test_a_source_is_sent_the_figures_of_its_keys_and_only_those() -> None:
    """Same code under two kinds, keys repeated in a request, keys without figures."""
    figures = {
        (0, 7): KeyFigures(3, 0, []),
        (1, 7): KeyFigures(4, 1, []),
        (0, 9): KeyFigures(2, 0, []),
    }
    m = Memberships.concat(
        W,
        [
            members(W, ["a", "b"], code=7, kind=0),
            members(W, ["a"], code=5, kind=0),  # no figures: a prompt sent once
            members(W, ["c"], code=9, kind=1),  # the code has figures, under another kind
            members(W, ["c"], code=9, kind=0),
        ],
    )
    assert figures_for(figures, m) == {(0, 7): figures[(0, 7)], (0, 9): figures[(0, 9)]}
    assert figures_for({}, m) == {} and figures_for(figures, Memberships.empty(W)) == {}
