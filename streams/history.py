"""Per-account history over days, beside the 5-minute window features.

Low-and-slow misuse stays under every per-window threshold: a free account that burns its
whole daily allowance over a few hours, or a key taken over gradually. What gives it away
is what the account accumulates over hours to days, so each account keeps exponentially
decayed sums (fixed memory, one float each) that every window updates with array operations:

- `day_tokens`: tokens used, decayed with a 12 h half-life, which reads as "about the
  last day's use" and is compared with the platform's free daily allowance;
- `novelty`: values new to this account (networks, countries, clients), decayed with a
  6 h half-life, so one move reads as one and a drift across many values adds up.
"""

from __future__ import annotations

import numpy as np

from streams.state import AccountTable

TOKENS_HALF_LIFE_S = 12 * 3600.0
NOVELTY_HALF_LIFE_S = 6 * 3600.0


def _decay(dt: np.ndarray, half_life: float) -> np.ndarray:
    return np.exp2(-np.maximum(dt, 0.0) / half_life)


def update_history(
    table: AccountTable,
    slots: np.ndarray,
    window_end: float,
    tokens: np.ndarray,
    new_values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold this window into each account's decayed sums; return (day_tokens, novelty)."""
    last = table.history_t[slots]
    dt = np.where(np.isnan(last), 0.0, window_end - last)
    day = np.nan_to_num(table.day_tokens[slots]) * _decay(dt, TOKENS_HALF_LIFE_S) + tokens
    nov = np.nan_to_num(table.novelty[slots]) * _decay(dt, NOVELTY_HALF_LIFE_S) + new_values
    table.day_tokens[slots] = day
    table.novelty[slots] = nov
    table.history_t[slots] = window_end
    return day, nov
