"""Cross-account signals: many accounts behind one /24, client, prompt or failing IP.

Each signal is a bounded index from a key (a /24 block, a user agent, a prompt hash, an IP
that failed auth) to the accounts seen with it within a horizon. The engine reads, per
account-window, the largest group the account belongs to, and keeps who else is in it so
a person can see the campaign.

Sharing a key only makes accounts related: a popular client library or an office NAT is
shared by many innocent accounts. So each index also remembers which members misbehaved
(`misbehaving`: most of a free allowance burnt on one model, rate-limited, moderation hits, the same
prompts over and over), and `group_misuse_accounts` is the largest number of misbehaving
accounts in any group the account belongs to where they are at least half the group.

The indexes and signals are in streams/features/campaign_index.py; the update is done in
three steps that partitions can share (streams/features/campaign_split.py), here all in one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streams.features.campaign_index import SIGNALS, KeyIndex
from streams.features.campaign_split import KeyOwner, contributions, fill

__all__ = ["SIGNALS", "CampaignState", "KeyIndex", "misbehaving"]


def misbehaving(X: np.ndarray, col: dict[str, int], free_daily_tokens: float) -> np.ndarray:
    """Rows whose own behaviour is what campaigns do, whatever the group."""
    req = X[:, col["requests"]]
    free = X[:, col["is_free_plan"]] > 0
    return (
        # Burning most of a free allowance on one model, as a script does; a hackathon's
        # people burn a lot too, but try several models.
        (
            free
            & (X[:, col["day_tokens"]] >= 0.5 * free_daily_tokens)
            & (X[:, col["models_seen"]] <= 1)
        )
        | ((X[:, col["rate_limited_rate"]] >= 0.02) & (req >= 10))
        | ((X[:, col["moderation_mean"]] >= 0.1) & (req >= 5))
        | ((X[:, col["flagged_rate"]] >= 0.1) & (req >= 5))
        | ((X[:, col["prompt_repeat_rate"]] >= 0.7) & (req >= 10))
    )


class CampaignState:
    """One engine's campaign signals with every key its own: the three steps of
    campaign_split with a single owner, as replay and a single worker run them."""

    def __init__(
        self,
        horizon_s: float = 6 * 3600,
        max_keys: int = 200_000,
        free_daily_tokens: float = 250_000,
    ) -> None:
        self.owner = KeyOwner(horizon_s, max_keys)
        self.index = self.owner.index
        self.free_daily_tokens = free_daily_tokens

    def update(
        self,
        window_end: float,
        gid: np.ndarray,
        order: np.ndarray,
        account_ids: list[str],
        sources: dict[str, tuple[np.ndarray, np.ndarray]],
        texts: Callable[[np.ndarray, str], list[str]],
        X: np.ndarray,
        col: dict[str, int],
    ) -> list[dict[str, Any] | None]:
        """Record this window's keys, write the four signal columns of X, return evidence.

        sources: kind -> (code per event, which events count), in the original event order;
        `order` sorts them by account group. `texts(rows, field)` reads the strings behind
        codes, which only keys shown as evidence need.
        """
        bad = misbehaving(X, col, self.free_daily_tokens)
        mine = contributions(window_end, gid, order, account_ids, sources, bad, alone=True)
        figures = self.owner.record(window_end, [mine.sent])
        names = {kind: idx.names for kind, idx in self.index.items()}
        evidence = fill(X, col, mine, figures, texts, names)
        self.owner.end_window(window_end)
        return evidence

    def state_dict(self) -> dict[str, Any]:
        return self.owner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.owner.load_state_dict(state)
