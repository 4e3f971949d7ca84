"""Per-account behavioural features over one closed event-time window.

All of a window's events are grouped by account with one sort, then every feature is a
numpy reduction over the groups. History (IPs seen before, usual hours) lives in the
AccountTable and is read and updated with array operations as well.
"""

from __future__ import annotations

import numpy as np

from streams.contract.codes import code, key_fingerprint
from streams.contract.events import EventBatch
from streams.contract.reference import FINISH_CODES, PLAN_CODES
from streams.core.batch import FeatureBatch, fill_nan
from streams.features.campaign import CampaignState
from streams.features.groups import Groups, first_and_counts, group_by_account, pair_key
from streams.features.history import new_country_overlap, update_history
from streams.features.state import AccountTable

FEATURES = (
    "requests",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_request",
    "completion_ratio",
    "cost_usd",
    "error_rate",
    "auth_fail_rate",
    "rate_limited_rate",
    "content_filter_rate",
    "length_rate",
    "flagged_rate",
    "moderation_mean",
    "content_filtered",
    "flagged_requests",
    "auth_failures",
    "distinct_ips",
    "distinct_subnets",
    "distinct_countries",
    "distinct_user_agents",
    "distinct_keys",
    "distinct_models",
    "new_ips",
    "new_subnets",
    "new_countries",
    "new_user_agents",
    "prompt_repeat_rate",
    "interarrival_cv",
    "off_hours_share",
    "model_entropy",
    "account_age_days",
    "history_windows",
    "is_free_plan",
    "subnet_new_accounts",
    "ua_new_accounts",
    "prompt_shared_accounts",
    "ip_auth_fail_accounts",
    "day_tokens",
    "novelty",
    "new_country_overlap",
    "new_country_share",
    "group_misuse_accounts",
    "usual_flag_rate",
    "models_seen",
)
COL = {name: i for i, name in enumerate(FEATURES)}
# USD per 1k tokens; an unknown model is priced like a mid-size one.
MODEL_PRICE = {
    "gpt-small": 0.0005,
    "gpt-medium": 0.003,
    "gpt-large": 0.015,
    "reasoner-xl": 0.06,
    "embed-v3": 0.0001,
    "image-gen-2": 0.04,
}
DEFAULT_PRICE = 0.003
# Codes depend on the process's hash key, so the price table is made per key fingerprint.
_PRICES_BY_KEY: dict[str, dict[int, float]] = {}
NEW_ACCOUNT_DAYS = 2.0
PLAN_NAMES = {v: k for k, v in PLAN_CODES.items()}


def _unsort(g: Groups) -> np.ndarray:
    """Group of each event in the original (unsorted) event order."""
    out = np.empty_like(g.gid)
    out[g.order] = g.gid
    return out


def _entropy(g: Groups, codes: np.ndarray) -> np.ndarray:
    first, counts = first_and_counts(pair_key(g.gid, codes[g.order]))
    pg = g.gid[first]
    p = counts / g.size[pg]
    # Sum in an order that does not depend on the per-process string hash.
    o = np.lexsort((p, pg))
    return np.bincount(pg[o], weights=(-p * np.log2(p))[o], minlength=len(g.start))


def _interarrival_cv(g: Groups, ts: np.ndarray) -> np.ndarray:
    t = ts[g.order]
    d = np.diff(t)
    same = g.gid[1:] == g.gid[:-1]
    d, dg = d[same], g.gid[1:][same]
    n = np.bincount(dg, minlength=len(g.start)).astype(np.float64)
    s1 = np.bincount(dg, weights=d, minlength=len(g.start))
    s2 = np.bincount(dg, weights=d * d, minlength=len(g.start))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        cv = np.sqrt(var) / np.maximum(mean, 1e-3)
    # Too few gaps to judge regularity: report what a Poisson client would show.
    return np.where(n >= 4, cv, 1.0)


def _new_counts(
    g: Groups, table: AccountTable, ring: str, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    first, distinct = g.distinct(codes)
    pg = g.gid[first]
    pv = codes[g.order[first]]
    pslots = g.slots[pg]
    member = table.ring_members(ring, pslots, pv)
    new = np.bincount(pg[~member], minlength=len(g.start))
    table.ring_add(ring, pslots[~member], pv[~member])
    return distinct, new


def _prices(models: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(models, return_inverse=True)
    fp = key_fingerprint()
    by_code = _PRICES_BY_KEY.get(fp)
    if by_code is None:
        by_code = _PRICES_BY_KEY[fp] = {code(m): p for m, p in MODEL_PRICE.items()}
    per = [by_code.get(c, DEFAULT_PRICE) for c in uniq.tolist()]
    return np.array(per, dtype=np.float64)[inv]


def window_features(
    ev: EventBatch,
    window_start: float,
    window_end: float,
    table: AccountTable,
    campaign: CampaignState,
) -> tuple[FeatureBatch, Groups]:
    """Features for every account active in one window; updates account history."""
    batch, g, sources = features_without_campaign(ev, window_start, window_end, table)
    related = campaign.update(
        window_end=window_end,
        gid=g.gid,
        order=g.order,
        account_ids=list(batch.account_ids),
        sources=sources,
        texts=ev.texts,
        X=batch.X,
        col=COL,
    )
    batch.context = {"campaign": related}
    return batch, g


# kind -> (code per event, which events count): the campaign signals' inputs of a window.
CampaignSources = dict[str, tuple[np.ndarray, np.ndarray]]


def features_without_campaign(
    ev: EventBatch, window_start: float, window_end: float, table: AccountTable
) -> tuple[FeatureBatch, Groups, CampaignSources]:
    """Every feature of one window but the campaign signals, whose columns stay 0 until
    the campaign step (streams/features/campaign_split.py) writes them; updates account
    history. Returns what that step needs: the groups and each signal's keys per event."""
    slots = table.slots_for(
        ev.account_id, lambda rows: ev.texts(rows, "account_id"), ev.account_check
    )
    g = group_by_account(slots, ev.ts)
    n = len(g.start)
    X = np.zeros((n, len(FEATURES)))
    o = g.order
    req = g.size.astype(np.float64)
    pt = g.sum(ev.prompt_tokens.astype(np.float64))
    ct = g.sum(ev.completion_tokens.astype(np.float64))
    X[:, COL["requests"]] = req
    X[:, COL["prompt_tokens"]] = pt
    X[:, COL["completion_tokens"]] = ct
    X[:, COL["tokens"]] = pt + ct
    X[:, COL["tokens_per_request"]] = (pt + ct) / req
    X[:, COL["completion_ratio"]] = ct / np.maximum(pt, 1.0)
    price = _prices(ev.model)
    X[:, COL["cost_usd"]] = g.sum(price * (ev.prompt_tokens + ev.completion_tokens) / 1000.0)
    st = ev.status
    X[:, COL["error_rate"]] = g.sum(((st >= 400) & (st != 401) & (st != 429)).astype(float)) / req
    X[:, COL["auth_failures"]] = g.sum((st == 401).astype(float))
    X[:, COL["auth_fail_rate"]] = X[:, COL["auth_failures"]] / req
    X[:, COL["rate_limited_rate"]] = g.sum((st == 429).astype(float)) / req
    fin = ev.finish_reason
    X[:, COL["content_filtered"]] = g.sum((fin == FINISH_CODES["content_filter"]).astype(float))
    X[:, COL["content_filter_rate"]] = X[:, COL["content_filtered"]] / req
    X[:, COL["length_rate"]] = g.sum((fin == FINISH_CODES["length"]).astype(float)) / req
    X[:, COL["flagged_requests"]] = g.sum(ev.flagged.astype(float))
    X[:, COL["flagged_rate"]] = X[:, COL["flagged_requests"]] / req
    X[:, COL["moderation_mean"]] = g.sum(fill_nan(ev.moderation)) / req

    overlap, share = new_country_overlap(g, table, ev.country, window_end)
    X[:, COL["new_country_overlap"]], X[:, COL["new_country_share"]] = overlap, share
    for ring, codes, dname, nname in (
        ("ip", ev.ip, "distinct_ips", "new_ips"),
        ("subnet", ev.subnet, "distinct_subnets", "new_subnets"),
        ("country", ev.country, "distinct_countries", "new_countries"),
        ("ua", ev.user_agent, "distinct_user_agents", "new_user_agents"),
    ):
        distinct, new = _new_counts(g, table, ring, codes)
        X[:, COL[dname]] = distinct
        # An account's first window has no history to be new against.
        X[:, COL[nname]] = np.where(table.windows[g.slots] > 0, new, 0)
    # Models the account has used lately (up to 4): a script sticks to one, people explore.
    _new_counts(g, table, "model", ev.model)
    X[:, COL["models_seen"]] = (table.model_ring[g.slots] != 0).sum(axis=1)
    X[:, COL["distinct_keys"]] = g.distinct(ev.api_key_id)[1]
    X[:, COL["distinct_models"]] = g.distinct(ev.model)[1]
    X[:, COL["model_entropy"]] = _entropy(g, ev.model)
    ph = ev.prompt_hash
    with_hash = g.sum((ph != 0).astype(float))
    X[:, COL["prompt_repeat_rate"]] = np.where(
        with_hash > 0, 1.0 - g.distinct(ph)[1] / np.maximum(with_hash, 1.0), 0.0
    )
    X[:, COL["interarrival_cv"]] = _interarrival_cv(g, ev.ts)

    # Usual hours: share of this window's requests in hours the account rarely uses.
    hour = ((ev.ts[o] // 3600) % 24).astype(np.int64)
    prof = table.hours[g.slots]
    total = prof.sum(axis=1)
    share = prof[g.gid, hour] / np.maximum(total[g.gid], 1.0)
    off = (share < 1 / 48) & (total[g.gid] >= 50)
    X[:, COL["off_hours_share"]] = np.bincount(g.gid, weights=off, minlength=n) / req
    hkey = g.gid * 24 + hour
    cnt = np.bincount(hkey, minlength=24 * n)  # hkey < 24 * n: cheaper than a sort
    uniq = np.flatnonzero(cnt)
    table.hours[g.slots[uniq // 24], uniq % 24] += cnt[uniq]
    full = table.hours[g.slots].sum(axis=1) > 5000
    if full.any():
        table.hours[g.slots[full]] *= 0.5

    # Account scalars: plan, creation time, history length.
    last = g.start + g.size - 1
    plan_codes = ev.plan[o[last]].astype(np.int8)
    created = np.fmax.reduceat(ev.account_created[o], g.start) if n else np.empty(0)
    s = g.slots
    first = np.isnan(table.first_seen[s])
    table.first_seen[s[first]] = window_start
    table.created[s] = np.where(np.isnan(created), table.created[s], created)
    born = np.where(np.isnan(table.created[s]), table.first_seen[s], table.created[s])
    age_days = np.maximum(window_end - born, 0.0) / 86_400
    X[:, COL["account_age_days"]] = age_days
    X[:, COL["history_windows"]] = table.windows[s]
    X[:, COL["is_free_plan"]] = plan_codes == PLAN_CODES["free"]
    table.plan[s] = plan_codes
    table.windows[s] += 1
    new_values = (
        X[:, COL["new_subnets"]] + X[:, COL["new_countries"]] + X[:, COL["new_user_agents"]]
    )
    hits = np.maximum(X[:, COL["flagged_requests"]], X[:, COL["content_filtered"]])
    day, nov, usual = update_history(
        table, s, window_end, X[:, COL["tokens"]], new_values, req, hits
    )
    X[:, COL["day_tokens"]], X[:, COL["novelty"]] = day, nov
    X[:, COL["usual_flag_rate"]] = usual
    table.last_seen[s] = ev.ts[o[last]]

    young_event = (age_days < NEW_ACCOUNT_DAYS)[_unsort(g)]
    sources = {
        "subnet": (ev.subnet, young_event),
        "ua": (ev.user_agent, young_event),
        "prompt": (ph, ph != 0),  # repeated ones only: campaign_index.REPEATED_KINDS
        "ip": (ev.ip, st == 401),
    }
    batch = FeatureBatch(
        X=X,
        columns=FEATURES,
        account_ids=np.array([table.ids[x] for x in s], dtype=object),
        accounts=table.codes_of(s),
        window_start=np.full(n, window_start),
        window_end=np.full(n, window_end),
        plans=np.array([PLAN_NAMES[c] for c in plan_codes.tolist()], dtype=object),
    )
    return batch, g, sources
