"""The campaign indexes: which accounts were seen with each shared key, and the signals.

A key is a /24 block, a user agent, a prompt hash or an IP that failed auth; the engine
reads, per account-window, the largest group the account is in (streams/features/campaign.py).
"""

from __future__ import annotations


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
# Signals whose keys count only when they occur in more than one event of the window,
# whichever accounts sent them: most prompts are unique, and indexing only repeated ones keeps
# the prompt index small. A prompt sent by two accounts in one window is repeated by definition.
REPEATED_KINDS = ("prompt",)
KINDS = tuple(kind for _, kind, _ in SIGNALS)
