"""The campaign signals in three steps, so that accounts and keys can live on different hosts.

On partitions, an engine sees only its own accounts, but a campaign's accounts spread over
all of them. So a window's campaign signals are worked out in three pure steps:

1. `contributions`, on each engine: its accounts' memberships of the window (which account
   was seen with which key, how often, misbehaving or not);
2. `KeyOwner.apply`, where the keys live: every source's memberships of those keys for the
   window update the indexes, and each key's figures come back (its group size, its
   misbehaving members, who is in it);
3. `fill`, on each engine again: the figures of its own memberships give the signal
   columns of X and the evidence.

The owner orders memberships by (account id, key) before applying them, never by where
they came from, so that P engines and K owners give exactly what one engine with one owner
gives (tests/unit/features/test_campaign_split.py), provided that:
- an owner applies a window once it has every source's memberships of it;
- every owner applies every window, with no memberships if need be (expiry counts windows);
- no owner passes its key limit (max_keys bounds each owner's share of the keys).
An engine with other sources beside it sends every prompt it saw, since another may have
sent the same one; one engine alone leaves out those it saw once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.features.campaign_index import (
    BEHAVIOUR_KINDS,
    FIELD,
    KINDS,
    MIN_GROUP,
    REPEATED_KINDS,
    SIGNALS,
    KeyIndex,
)
from streams.features.groups import among, first_and_counts, first_counts_inverse, pair_key

# (index of the kind in KINDS, key code): how figures are looked up.
KeyRef = tuple[int, int]


@dataclass
class Memberships:
    """What the owners of keys need from one engine for one window, and nothing more.

    Row i: account[i] was seen with the key code[i] of signal KINDS[kind[i]] in events[i]
    events of the window, and misbehaved in it or not (bad[i]).
    """

    window_end: float
    kind: np.ndarray  # int8
    code: np.ndarray  # uint64
    account: np.ndarray  # object: account ids
    events: np.ndarray  # int64
    bad: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.code)

    def take(self, rows: np.ndarray) -> Memberships:
        return Memberships(
            self.window_end,
            self.kind[rows],
            self.code[rows],
            self.account[rows],
            self.events[rows],
            self.bad[rows],
        )

    @staticmethod
    def empty(window_end: float) -> Memberships:
        return Memberships(
            window_end,
            np.empty(0, np.int8),
            np.empty(0, np.uint64),
            np.empty(0, object),
            np.empty(0, np.int64),
            np.empty(0, bool),
        )

    @staticmethod
    def concat(window_end: float, parts: Sequence[Memberships]) -> Memberships:
        for p in parts:
            if p.window_end != window_end:
                raise ValueError(
                    f"memberships of the window ending {p.window_end} given for {window_end}"
                )
        if not parts:
            return Memberships.empty(window_end)
        return Memberships(
            window_end,
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("kind", "code", "account", "events", "bad")
            ),
        )


@dataclass
class Contributed:
    """An engine's memberships of a window, with where each came from (never sent): its
    account's row of X, and an event carrying the key, whose text names it in evidence."""

    sent: Memberships
    group: np.ndarray
    event: np.ndarray


@dataclass
class KeyFigures:
    """One key's figures after a window: the accounts in its group, how many of them
    misbehave when they are at least half of it (else 0), and who they are (most recent
    first, only for a group of MIN_GROUP or more)."""

    count: int
    bad: int
    accounts: list[str]


def contributions(
    window_end: float,
    gid: np.ndarray,
    order: np.ndarray,
    account_ids: list[str],
    sources: dict[str, tuple[np.ndarray, np.ndarray]],
    bad: np.ndarray,
    alone: bool = False,
) -> Contributed:
    """One window's memberships of one engine's accounts.

    sources: kind -> (code per event, which events count), in the original event order;
    `order` sorts them by account group `gid`; bad: whether each group misbehaved. Rows come
    by kind, then group, then key code: `fill` relies on it. An engine `alone` (the only
    source of the window) leaves out the keys of REPEATED_KINDS it saw once, which no other
    source can repeat: nearly every prompt.
    """
    accounts = np.array(account_ids, dtype=object)
    kinds, codes, groups, events, counts = [], [], [], [], []
    for i, kind in enumerate(KINDS):
        c_all, use = sources[kind]
        c, u = c_all[order], use[order]
        sel = np.flatnonzero(u & (c != 0))
        first, n = first_and_counts(pair_key(gid[sel], c[sel]))
        first = sel[first]
        if alone and kind in REPEATED_KINDS and len(first):
            keep = _repeated(c[first], n)
            first, n = first[keep], n[keep]
        o = np.lexsort((c[first], gid[first]))
        first, n = first[o], n[o]
        kinds.append(np.full(len(first), i, np.int8))
        codes.append(c[first])
        groups.append(gid[first])
        events.append(order[first])
        counts.append(n.astype(np.int64))
    group = np.concatenate(groups)
    sent = Memberships(
        window_end,
        np.concatenate(kinds),
        np.concatenate(codes).astype(np.uint64),
        accounts[group],
        np.concatenate(counts),
        np.asarray(bad, dtype=bool)[group],
    )
    return Contributed(sent, group, np.concatenate(events))


def _canonical(m: Memberships) -> Memberships:
    """Sorted by kind, account id and key, one row per (kind, account, key): the same rows
    in the same order whichever sources sent them, and in whatever order."""
    o = np.lexsort((m.code, m.account, m.kind))
    m = m.take(o)
    if len(m) < 2:
        return m
    same = (m.kind[1:] == m.kind[:-1]) & (m.code[1:] == m.code[:-1])
    same &= m.account[1:] == m.account[:-1]
    if not same.any():
        return m
    start = np.flatnonzero(np.r_[True, ~same])
    out = m.take(start)
    out.events = np.add.reduceat(m.events, start)
    out.bad = np.logical_or.reduceat(m.bad, start)
    return out


def _repeated(codes: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Whether each row's key was carried by more than one event, over all the rows."""
    _, _, inv = first_counts_inverse(codes)
    return np.bincount(inv, weights=events)[inv] > 1


def _repeated_only(m: Memberships) -> Memberships:
    """Without the keys of REPEATED_KINDS that one event alone carried in the window, in
    every source together: nearly every prompt, which no group can form on. Left out before
    `_canonical`, whose sort of account ids they made twenty times longer; the totals are
    summed over all rows, so how the sources split them changes nothing."""
    keep = np.ones(len(m), dtype=bool)
    for kind in REPEATED_KINDS:
        rows = np.flatnonzero(m.kind == KINDS.index(kind))
        if len(rows):
            keep[rows] = _repeated(m.code[rows], m.events[rows])
    return m if keep.all() else m.take(np.flatnonzero(keep))


def with_figures(codes: np.ndarray, figures: dict[KeyRef, KeyFigures]) -> np.ndarray:
    """Whether each code has figures under some kind. Most rows name keys without any
    (prompts sent once in the window), so callers walk only these rows in Python."""
    known = np.fromiter((k for _, k in figures), np.uint64, len(figures))
    return among(codes, known)


class KeyOwner:
    """The campaign indexes of the keys one owner holds."""

    def __init__(self, horizon_s: float, max_keys: int) -> None:
        self.index = {kind: KeyIndex(horizon_s, max_keys) for kind in KINDS}
        self._windows = 0

    def apply(self, window_end: float, parts: Sequence[Memberships]) -> dict[KeyRef, KeyFigures]:
        """Record every source's memberships of this owner's keys for one window, then end
        the window; the figures of every key they name. Call it for every window, with no
        parts if need be: the hourly expiry counts windows."""
        figures = self.record(window_end, parts)
        self.end_window(window_end)
        return figures

    def record(self, window_end: float, parts: Sequence[Memberships]) -> dict[KeyRef, KeyFigures]:
        """`apply` without ending the window (one engine fills its evidence in between, so
        that the names it caches expire with their keys)."""
        m = _canonical(_repeated_only(Memberships.concat(window_end, parts)))
        figures: dict[KeyRef, KeyFigures] = {}
        for i, kind in enumerate(KINDS):
            rows = np.flatnonzero(m.kind == i)
            keys = m.code[rows].tolist()
            accounts = m.account[rows].tolist()
            idx = self.index[kind]
            members, cap = idx.members, idx.max_accounts
            # A full key keeps the accounts it has: which new ones it takes follows the
            # canonical order, so that replays, restores and partitions agree.
            for a, k in zip(accounts, keys, strict=True):
                g = members.get(k)
                if g is None:
                    members[k] = {a: window_end}
                elif len(g) < cap or a in g:
                    g[a] = window_end
            behaviour = kind in BEHAVIOUR_KINDS
            if behaviour:  # misbehaving members count even when a full key turned them away
                worse = rows[m.bad[rows]]
                for a, k in zip(m.account[worse].tolist(), m.code[worse].tolist(), strict=True):
                    idx.bad.setdefault(k, {})[a] = window_end
            for k in dict.fromkeys(keys):
                count = len(members[k])
                b = idx.bad.get(k) if behaviour else None
                # A popular client shared by many accounts, a few of them odd, is no
                # campaign: most of the group has to misbehave.
                nbad = len(b) if b is not None and 2 * len(b) >= count else 0
                who = idx.accounts(k, window_end) if count >= MIN_GROUP else []
                figures[(i, k)] = KeyFigures(count, nbad, who)
        return figures

    def state_dict(self) -> dict[str, Any]:
        """kind -> (members, names, bad, windows ended): the count rides along with every
        kind so that the hourly expiry keeps its phase across a restore, and a reader that
        knows only the first three still reads the rest."""
        return {k: (v.members, v.names, v.bad, self._windows) for k, v in self.index.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._windows = 0
        for k, (members, names, *rest) in state.items():
            self.index[k].members, self.index[k].names = members, names
            self.index[k].bad = rest[0] if rest else {}
            self._windows = rest[1] if len(rest) > 1 else 0

    def end_window(self, window_end: float) -> None:
        self._windows += 1
        # Hourly, or as soon as an index passes its key limit: a flood of new accounts
        # brings tens of thousands of new keys a window, which must not wait an hour.
        over = any(len(idx.members) > idx.max_keys for idx in self.index.values())
        if over or self._windows % 12 == 0:
            for idx in self.index.values():
                idx.expire(window_end)


def fill(
    X: np.ndarray,
    col: dict[str, int],
    mine: Contributed,
    figures: dict[KeyRef, KeyFigures],
    texts: Callable[[np.ndarray, str], list[str]],
    names: dict[str, dict[int, str]] | None = None,
) -> list[dict[str, Any] | None]:
    """Write the four signal columns and group_misuse_accounts of X from the figures of the
    keys this engine contributed; return each row's evidence (its largest group, if any).

    `texts(rows, field)` reads the strings behind codes; `names` (kind -> code -> text)
    caches those already read, a key's text being the same wherever it is read.
    """
    n = X.shape[0]
    evidence: list[dict[str, Any] | None] = [None] * n
    best = [0] * n
    group_bad = [0] * n
    kinds = mine.sent.kind
    has = with_figures(mine.sent.code, figures)
    for i, (feature, kind, text) in enumerate(SIGNALS):
        rows = np.flatnonzero((kinds == i) & has)
        counts = [0] * n
        top = [0] * n
        top_row = [0] * n
        get = figures.get
        # Rows come by group then key, so of equal groups the lowest key is taken.
        for j, g, k in zip(
            rows.tolist(), mine.group[rows].tolist(), mine.sent.code[rows].tolist(), strict=True
        ):
            f = get((i, k))
            if f is None:  # not indexed: a prompt sent once in the whole window
                continue
            if f.bad > group_bad[g]:
                group_bad[g] = f.bad
            if f.count > counts[g]:
                counts[g], top[g], top_row[g] = f.count, k, j
        X[:, col[feature]] = counts
        cache = names[kind] if names is not None else {}
        for g in range(n):
            if counts[g] >= MIN_GROUP and counts[g] > best[g]:
                best[g] = counts[g]
                key = top[g]
                name = cache.get(key)
                if name is None:
                    row = mine.event[top_row[g]]
                    name = cache[key] = texts(np.array([row]), FIELD[kind])[0]
                evidence[g] = {
                    "signal": feature,
                    "key": name,
                    "count": counts[g],
                    "text": f"{counts[g]} " + text.format(key=name),
                    "accounts": list(figures[(i, key)].accounts),
                }
    X[:, col["group_misuse_accounts"]] = group_bad
    return evidence
