"""Per-account history over days, beside the 5-minute window features.

Low-and-slow misuse stays under every per-window threshold: a free account that burns its
whole daily allowance over a few hours, or a key taken over gradually. What gives it away
is what the account accumulates over hours to days, so each account keeps exponentially
decayed sums (fixed memory, one float each) that every window updates with array operations:

- `day_tokens`: tokens used, decayed with a 12 h half-life, which reads as "about the
  last day's use" and is compared with the platform's free daily allowance;
- `novelty`: values new to this account (networks, countries, clients), decayed with a
  6 h half-life, so one move reads as one and a drift across many values adds up;
- `usual_flag_rate`: the share of the account's requests flagged or filtered by
  moderation over about the last day (24 h half-life), before this window: a
  trust-and-safety vendor or a red team sends harmful content every day, a prober
  starts to;
- `new_country_overlap`: how many windows a country new to an established account was
  used *beside* one of its usual countries. A traveller or an office move switches
  country; a key taken over is used by its owner and by someone else at the same time,
  and the stranger's share grows while the owner's does not stop at once. A second
  office shows up beside the usual country too, but keeps a steady minor share; so the
  new country's share of recent requests (`new_country_share`, 2 h half-life) is kept.
"""

from __future__ import annotations

import numpy as np

from streams.features.groups import Groups
from streams.features.state import AccountTable

TOKENS_HALF_LIFE_S = 12 * 3600.0
NOVELTY_HALF_LIFE_S = 6 * 3600.0
FLAG_HALF_LIFE_S = 24 * 3600.0
OVERLAP_HORIZON_S = 24 * 3600.0
SHARE_HALF_LIFE_S = 2 * 3600.0
ESTABLISHED_WINDOWS = 24  # two hours of active windows before a country can be "new"


def _decay(dt: np.ndarray, half_life: float) -> np.ndarray:
    return np.exp2(-np.maximum(dt, 0.0) / half_life)


def update_history(
    table: AccountTable,
    slots: np.ndarray,
    window_end: float,
    tokens: np.ndarray,
    new_values: np.ndarray,
    requests: np.ndarray,
    flag_hits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold this window into each account's decayed sums; return day_tokens, novelty and
    the usual flagged share as it was before this window."""
    last = table.history_t[slots]
    dt = np.where(np.isnan(last), 0.0, window_end - last)
    day = np.nan_to_num(table.day_tokens[slots]) * _decay(dt, TOKENS_HALF_LIFE_S) + tokens
    nov = np.nan_to_num(table.novelty[slots]) * _decay(dt, NOVELTY_HALF_LIFE_S) + new_values
    k = _decay(dt, FLAG_HALF_LIFE_S)
    hits = np.nan_to_num(table.flag_hits[slots]) * k
    reqs = np.nan_to_num(table.flag_reqs[slots]) * k
    usual = np.where(reqs > 0, hits / np.maximum(reqs, 1e-9), 0.0)
    table.flag_hits[slots], table.flag_reqs[slots] = hits + flag_hits, reqs + requests
    table.day_tokens[slots] = day
    table.novelty[slots] = nov
    table.history_t[slots] = window_end
    return day, nov, usual


def new_country_overlap(
    g: Groups, table: AccountTable, countries: np.ndarray, end: float
) -> tuple[np.ndarray, np.ndarray]:
    """Windows in which a country new to the account was used beside a usual one, and
    that country's decayed share of the account's recent requests.

    Call before the country ring learns this window's countries.
    """
    first, _ = g.distinct(countries)
    pg = g.gid[first]
    pv = countries[g.order[first]]
    slots = g.slots
    member = table.ring_members("country", slots[pg], pv)
    tracked = table.newc_code[slots]
    n = len(slots)
    is_tracked = pv == tracked[pg]
    has_tracked = np.bincount(pg[is_tracked], minlength=n) > 0
    has_usual = np.bincount(pg[member & ~is_tracked], minlength=n) > 0
    recent = end - np.nan_to_num(table.newc_first[slots], nan=-np.inf) <= OVERLAP_HORIZON_S
    table.newc_windows[slots] += (has_tracked & has_usual & recent & (tracked != 0)).astype(
        np.int32
    )
    # A country new to an established account starts being tracked (the last one wins).
    established = table.windows[slots] >= ESTABLISHED_WINDOWS
    fresh = ~member & established[pg]
    if fresh.any():
        gs, codes = pg[fresh], pv[fresh]
        table.newc_code[slots[gs]] = codes
        table.newc_first[slots[gs]] = end
        table.newc_windows[slots[gs]] = has_usual[gs].astype(np.int32)
    recent = end - np.nan_to_num(table.newc_first[slots], nan=-np.inf) <= OVERLAP_HORIZON_S
    share = _tracked_share(g, table, countries, end, fresh.any())
    overlap = np.where(recent, table.newc_windows[slots], 0).astype(np.float64)
    return overlap, np.where(recent, share, 0.0)


def _tracked_share(
    g: Groups, table: AccountTable, countries: np.ndarray, end: float, reset: bool
) -> np.ndarray:
    slots = g.slots
    tracked = table.newc_code[slots]
    hit = countries[g.order] == tracked[g.gid]
    from_new = np.bincount(g.gid[hit], minlength=len(slots)).astype(np.float64)
    # Decay since the previous window of this account (history_t is updated later).
    last = table.history_t[slots]
    k = _decay(np.where(np.isnan(last), 0.0, end - last), SHARE_HALF_LIFE_S)
    started = table.newc_first[slots] == end  # tracking began in this window
    new_ev = np.where(started, 0.0, np.nan_to_num(table.newc_events[slots]) * k) + from_new
    all_ev = np.where(started, 0.0, np.nan_to_num(table.all_events[slots]) * k) + g.size
    table.newc_events[slots], table.all_events[slots] = new_ev, all_ev
    return np.where(tracked != 0, new_ev / np.maximum(all_ev, 1.0), 0.0)
