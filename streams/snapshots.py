"""Account feature snapshots: what the console draws an account's timeline from."""

from __future__ import annotations

import numpy as np

from detectors.base import FeatureBatch
from streams.alerts import rfc3339
from streams.events import EventBatch, line_texts
from streams.features import Groups

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


def _first_distinct(groups: Groups, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the first LIST_LIMIT distinct present codes in time order: (group, row)."""
    first, _ = groups.distinct(codes)
    first.sort()  # sorted events run by account, then time
    g = groups.gid[first]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1] if len(g) else g
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    keep = rank < LIST_LIMIT
    return g[keep], groups.order[first[keep]]


def snapshots_for(batch: FeatureBatch, groups: Groups, ev: EventBatch) -> list[dict]:
    """One snapshot per account-window: the features plus a few of the values behind them,
    read back from the raw lines."""
    n = len(batch.account_ids)
    raw = ev.raw.tolist()
    lists: dict[str, list[list[str]]] = {}
    for key, field in LISTS.items():
        g, rows = _first_distinct(groups, getattr(ev, field))
        values = line_texts(raw, rows.tolist(), field)
        out: list[list[str]] = [[] for _ in range(n)]
        # Groups run in order, so each group's values are one run.
        bounds = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1, len(g)].tolist() if len(g) else []
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            out[int(g[a])] = sorted({v for v in values[a:b] if v})
        lists[key] = out
    snaps = []
    names = batch.columns
    for i, feats in enumerate(batch.X.tolist()):
        snap = {
            "account_id": str(batch.account_ids[i]),
            "window_start": rfc3339(batch.window_start[i]),
            "window_end": rfc3339(batch.window_end[i]),
            "plan": str(batch.plans[i]),
            "features": dict(zip(names, feats, strict=True)),
        }
        for key in LISTS:
            snap[key] = lists[key][i]
        snaps.append(snap)
    return snaps
