"""Account feature snapshots: what the console draws an account's timeline from."""

from __future__ import annotations

import numpy as np

from detectors.base import FeatureBatch
from streams.alerts import rfc3339
from streams.codes import subnet_of
from streams.events import EventBatch

LIST_LIMIT = 10


def _distinct(values: list[str]) -> list[str]:
    out = sorted({v for v in values if v})
    return out[:LIST_LIMIT]


def snapshots_for(batch: FeatureBatch, groups, ev: EventBatch) -> list[dict]:
    """One snapshot per account-window: the features plus a few of the values behind them."""
    o = groups.order
    cols = {
        "ips": ev.ip[o].tolist(),
        "countries": ev.country[o].tolist(),
        "user_agents": ev.user_agent[o].tolist(),
        "api_keys": ev.api_key_id[o].tolist(),
        "prompt_hashes": ev.prompt_hash[o].tolist(),
    }
    bounds = np.r_[groups.start, len(o)].tolist()
    rows = []
    names = batch.columns
    for i, feats in enumerate(batch.X.tolist()):
        a, b = bounds[i], bounds[i + 1]
        snap = {
            "account_id": str(batch.account_ids[i]),
            "window_start": rfc3339(batch.window_start[i]),
            "window_end": rfc3339(batch.window_end[i]),
            "plan": str(batch.plans[i]),
            "features": dict(zip(names, feats, strict=True)),
        }
        for key, values in cols.items():
            snap[key] = _distinct(values[a:b])
        snap["subnets"] = _distinct([subnet_of(ip) for ip in snap["ips"]])
        rows.append(snap)
    return rows
