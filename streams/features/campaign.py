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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streams.features.groups import unique_pairs


class KeyIndex:
    """key code -> {account_id: last seen}, bounded in keys and accounts per key.

    Members older than the horizon are dropped hourly rather than on every read, so a
    count can include accounts up to an hour past the horizon.
    """

    def __init__(self, horizon_s: float, max_keys: int, max_accounts: int = 64) -> None:
        self.horizon_s = horizon_s
        self.max_keys = max_keys
        self.max_accounts = max_accounts
        self.members: dict[int, dict[str, float]] = {}
        self.names: dict[int, str] = {}  # text of keys shown as evidence
        self.bad: dict[int, dict[str, float]] = {}  # members seen misbehaving, and when

    def accounts(self, key: int, now: float, limit: int = 25) -> list[str]:
        m = self.members.get(key, {})
        cutoff = now - self.horizon_s
        live = sorted((a for a, t in m.items() if t >= cutoff), key=lambda a: -m[a])
        return live[:limit]

    def expire(self, now: float) -> None:
        """Drop members older than the horizon; counts are exact right after this."""
        cutoff = now - self.horizon_s
        for key in list(self.members):
            m = self.members[key]
            stale = [a for a, t in m.items() if t < cutoff]
            for a in stale:
                del m[a]
            if not m:
                del self.members[key]
                self.names.pop(key, None)
        for key in list(self.bad):
            b = self.bad[key]
            for a in [a for a, t in b.items() if t < cutoff]:
                del b[a]
            if not b or key not in self.members:
                del self.bad[key]
        if len(self.members) > self.max_keys:
            by_age = sorted(self.members, key=lambda k: max(self.members[k].values()))
            for key in by_age[: len(self.members) - self.max_keys]:
                del self.members[key]
                self.names.pop(key, None)
                self.bad.pop(key, None)


SIGNALS = (
    ("subnet_new_accounts", "subnet", "new accounts share the block {key}"),
    ("ua_new_accounts", "ua", "new accounts share the client {key!r}"),
    ("prompt_shared_accounts", "prompt", "accounts send the same prompt {key}"),
    ("ip_auth_fail_accounts", "ip", "accounts failed auth from IP {key}"),
)
# The event field whose text names a key of each signal.
FIELD = {"subnet": "subnet", "ua": "user_agent", "prompt": "prompt_hash", "ip": "ip"}
MIN_GROUP = 3
# Signals whose groups count misbehaving members; failed auth is misbehaviour already.
BEHAVIOUR_KINDS = ("subnet", "ua", "prompt")


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
    def __init__(
        self,
        horizon_s: float = 6 * 3600,
        max_keys: int = 200_000,
        free_daily_tokens: float = 250_000,
    ) -> None:
        self.index = {kind: KeyIndex(horizon_s, max_keys) for _, kind, _ in SIGNALS}
        self.free_daily_tokens = free_daily_tokens
        self._windows = 0

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

        n = len(account_ids)
        evidence: list[dict[str, Any] | None] = [None] * n
        best = [0] * n
        bad = misbehaving(X, col, self.free_daily_tokens).tolist()
        group_bad = [0] * n
        for feature, kind, text in SIGNALS:
            codes, use = sources[kind]
            c, u = codes[order], use[order]
            sel = np.flatnonzero(u & (c != 0))
            first = sel[unique_pairs(gid[sel], c[sel])]
            # Insertion order decides which accounts a full key keeps: by code, not by
            # arrival, so that replays and restores agree.
            o = np.lexsort((c[first], gid[first]))
            first = first[o]
            groups = gid[first].tolist()
            keys = c[first].tolist()
            idx = self.index[kind]
            members = idx.members
            cap = idx.max_accounts
            for g, k in zip(groups, keys, strict=True):
                m = members.get(k)
                if m is None:
                    members[k] = {account_ids[g]: window_end}
                elif len(m) < cap or account_ids[g] in m:
                    m[account_ids[g]] = window_end
                if bad[g] and kind in BEHAVIOUR_KINDS:
                    idx.bad.setdefault(k, {})[account_ids[g]] = window_end
            if kind in BEHAVIOUR_KINDS and idx.bad:
                for g, k in zip(groups, keys, strict=True):
                    b = idx.bad.get(k)
                    # A popular client shared by many accounts, a few of them odd, is no
                    # campaign: most of the group has to misbehave.
                    if b is not None and len(b) > group_bad[g] and 2 * len(b) >= len(members[k]):
                        group_bad[g] = len(b)
            counts = [0] * n
            top = [0] * n
            top_row = [0] * n
            for j, (g, k) in enumerate(zip(groups, keys, strict=True)):
                c_k = len(members[k])
                if c_k > counts[g]:
                    counts[g], top[g], top_row[g] = c_k, k, j
            X[:, col[feature]] = counts
            for g in range(n):
                if counts[g] >= MIN_GROUP and counts[g] > best[g]:
                    best[g] = counts[g]
                    key = top[g]
                    name = idx.names.get(key)
                    if name is None:
                        row = order[first[top_row[g]]]
                        name = idx.names[key] = texts(np.array([row]), FIELD[kind])[0]
                    evidence[g] = {
                        "signal": feature,
                        "key": name,
                        "count": counts[g],
                        "text": f"{counts[g]} " + text.format(key=name),
                        "accounts": idx.accounts(key, window_end),
                    }
        X[:, col["group_misuse_accounts"]] = group_bad
        self._windows += 1
        # Hourly, or as soon as an index passes its key limit: a flood of new accounts
        # brings tens of thousands of new keys a window, which must not wait an hour.
        over = any(len(idx.members) > idx.max_keys for idx in self.index.values())
        if over or self._windows % 12 == 0:
            for idx in self.index.values():
                idx.expire(window_end)
        return evidence

    def state_dict(self) -> dict[str, Any]:
        return {k: (v.members, v.names, v.bad) for k, v in self.index.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, (members, names, *bad) in state.items():
            self.index[k].members, self.index[k].names = members, names
            self.index[k].bad = bad[0] if bad else {}
