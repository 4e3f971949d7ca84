"""Account feature snapshots: what the console draws an account's timeline from."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from streams.contract.events import EventBatch, line_texts
from streams.core.alerts import rfc3339
from streams.core.batch import FeatureBatch
from streams.features.groups import Groups, unique_pairs

LIST_LIMIT = 10
# Snapshot list -> event field.
LISTS = {
    "ips": "ip",
    "countries": "country",
    "user_agents": "user_agent",
    "api_keys": "api_key_id",
    "prompt_hashes": "prompt_hash",
    "subnets": "subnet",
}


def _first_distinct(
    gid: np.ndarray, rows: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the first LIST_LIMIT distinct present codes in time order: (group, row).

    gid and rows are the group and event row of events sorted by account, then time.
    """
    c = codes[rows]
    first = unique_pairs(gid, c)
    first = first[c[first] != 0]
    first.sort()
    g = gid[first]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if len(g) else g
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    keep = rank < LIST_LIMIT
    return g[keep], rows[first[keep]]


def _events_of(groups: Groups, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, event row) of the sorted events of groups `which` (ascending)."""
    sizes = groups.size[which]
    pos = np.repeat(groups.start[which] - np.cumsum(np.r_[0, sizes[:-1]]), sizes)
    pos += np.arange(int(sizes.sum()))
    return groups.gid[pos], groups.order[pos]


@dataclass(frozen=True)
class WindowSnapshots:
    """One closed window's account snapshots, made into dicts only when asked for.

    A Kafka worker sends only each account's latest snapshot per checkpoint, so most are
    never materialised; `vigil replay --store` asks for all of them.
    """

    batch: FeatureBatch
    groups: Groups
    events: EventBatch

    def __len__(self) -> int:
        return len(self.batch.account_ids)

    def rows(self, which: list[int] | None = None) -> list[dict]:
        """Snapshots of account-windows `which` (all by default): the features plus a few
        of the values behind them, read back from the raw lines."""
        b, groups, ev = self.batch, self.groups, self.events
        which = list(range(len(self))) if which is None else which
        if len(which) == len(self):
            gid, order = groups.gid, groups.order
        else:  # a few accounts: look only at their events
            gid, order = _events_of(groups, np.unique(np.asarray(which, dtype=np.int64)))
        firsts = {key: _first_distinct(gid, order, getattr(ev, f)) for key, f in LISTS.items()}
        # Only the lines the lists are read from, not the window's every line: a few
        # accounts of a large window are built at a time.
        needed = np.unique(np.concatenate([rows for _, rows in firsts.values()]))
        raw = ev.raw[needed].tolist()
        lists: dict[str, dict[int, list[str]]] = {}
        for key, (g, rows) in firsts.items():
            values = line_texts(raw, np.searchsorted(needed, rows).tolist(), LISTS[key])
            out: dict[int, list[str]] = {}
            # Groups run in order, so each group's values are one run; the codes were
            # distinct and present, so the strings are too.
            cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
            bounds = np.r_[0, cuts, len(g)].tolist() if len(g) else []
            gl = g.tolist()
            for a, z in zip(bounds[:-1], bounds[1:], strict=False):
                out[gl[a]] = sorted(values[a:z]) if z - a > 1 else values[a:z]
            lists[key] = out
        names = b.columns
        # One closed window: every row has the same bounds.
        start, end = (rfc3339(b.window_start[0]), rfc3339(b.window_end[0])) if len(b) else ("", "")
        accounts, plans, X = b.account_ids.tolist(), b.plans.tolist(), b.X[which].tolist()
        snaps = []
        for i, feats in zip(which, X, strict=True):
            snap = {
                "account_id": str(accounts[i]),
                "window_start": start,
                "window_end": end,
                "plan": str(plans[i]),
                "features": dict(zip(names, feats, strict=True)),
            }
            for key in LISTS:
                snap[key] = lists[key].get(i, [])
            snaps.append(snap)
        return snaps

    def subset(self, which: np.ndarray) -> WindowSnapshots:
        """Rows `which` (ascending) as a window of their own, holding only their events:
        row j of the result is row which[j] here."""
        _, rows = _events_of(self.groups, which)
        sizes = self.groups.size[which]
        groups = Groups(
            order=np.arange(len(rows)),
            gid=np.repeat(np.arange(len(which)), sizes),
            start=np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64),
            size=sizes,
            slots=self.groups.slots[which],
        )
        return WindowSnapshots(self.batch.take(which), groups, self.events.take(rows))


def materialise(windows: list[WindowSnapshots]) -> list[dict]:
    return [s for w in windows for s in w.rows()]


def latest(picks: dict[str, tuple[WindowSnapshots, int]]) -> list[tuple[str, dict]]:
    """Materialise the picked (window, row) of each account, one pass per window."""
    by_window: dict[int, tuple[WindowSnapshots, list[str], list[int]]] = {}
    for account, (w, i) in picks.items():
        _, accounts, rows = by_window.setdefault(id(w), (w, [], []))
        accounts.append(account)
        rows.append(i)
    return [
        pair
        for w, accounts, rows in by_window.values()
        for pair in zip(accounts, w.rows(rows), strict=True)
    ]


# Closed windows a LatestSnapshots holds on to: two per partition of an eight-partition
# worker, whose partitions close their windows at about the same event time.
MAX_WINDOWS = 16


class LatestSnapshots:
    """Each account's latest snapshot since the last `detach`, built as late as possible.

    A pick points into a closed window, and the window, with all its events, stays in
    memory while any pick points into it. Between two sends, every 30 s by default, that
    would be every window closed meanwhile: on a dense hour replayed in seconds, all of
    them (100 MB more). Beyond `max_windows`, the oldest window's remaining picks (the
    accounts not seen since) move to a copy holding only their events, and the window is
    let go.
    """

    def __init__(self, max_windows: int = MAX_WINDOWS) -> None:
        self.max_windows = max_windows
        self.picks: dict[str, tuple[WindowSnapshots, int]] = {}
        self.windows: deque[WindowSnapshots] = deque()

    def __len__(self) -> int:
        return len(self.picks)

    def add(self, w: WindowSnapshots) -> None:
        """Makes w's rows the latest of their accounts."""
        for i, account in enumerate(w.batch.account_ids.tolist()):
            self.picks[account] = (w, i)
        self.windows.append(w)
        while len(self.windows) > self.max_windows:
            self._settle(self.windows.popleft())

    def _settle(self, w: WindowSnapshots) -> None:
        # Numpy takes of the few accounts not seen since, not dicts: a dict costs about
        # 50 us, and most of these accounts come back in a later window anyway.
        ids = w.batch.account_ids.tolist()
        rows = [i for i, a in enumerate(ids) if (p := self.picks.get(a)) and p[0] is w]
        if rows:
            sub = w.subset(np.asarray(rows, dtype=np.int64))
            for j, i in enumerate(rows):
                self.picks[ids[i]] = (sub, j)

    def detach(self) -> dict[str, tuple[WindowSnapshots, int]]:
        """Every pick, unbuilt, for `latest` to build later, in any thread: a picked window
        is scored and no longer changes. The holder is empty afterwards, whatever the
        build does."""
        picks, self.picks, self.windows = self.picks, {}, deque()
        return picks
