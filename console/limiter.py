"""A bounded sign-in limiter: failed attempts per client address and per user name.

Two properties matter against a hostile client:

- Memory is bounded. Keys are cut to `MAX_KEY_CHARS`, at most `max_keys` keys are held
  (least recently used go first), and each key holds at most `max_failures` timestamps.
  A refused attempt (429) records nothing, so hammering a blocked name costs nothing.
- Guesses are bounded under concurrency. `acquire` checks the budget and books the
  attempt as a failure in one step under the lock, *before* the slow password hash runs.
  A correct password hands the booking back (`succeed`), a wrong one keeps it. So however
  many requests race, no more than `max_failures` password checks run per key and window.

Evicting the least recently used key is the price of the bound: a client that can send
from more than `max_keys` addresses within a window can push older counters out. Each of
those addresses is itself limited, so that buys at most `max_failures` guesses per address.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_KEY_CHARS = 256
DEFAULT_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Ticket:
    """One booked attempt: the keys it was charged to and the time it was booked at."""

    keys: tuple[str, ...]
    at: float


class LoginLimiter:
    """Sliding-window failure counts per key, bounded in keys, key length and entries."""

    def __init__(
        self, max_failures: int, window_s: float, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("max_failures, window_s and max_keys must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(kind: str, value: str) -> str:
        """`kind:value`, cut so that no caller can make a key longer than MAX_KEY_CHARS."""
        return f"{kind}:{value}"[:MAX_KEY_CHARS]

    def _recent(self, key: str, now: float) -> deque[float] | None:
        """The key's failures still inside the window; drops the key when none are left."""
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def _wait(self, keys: tuple[str, ...], now: float) -> int:
        waits = []
        for k in keys:
            q = self._recent(k, now)
            if q is not None and len(q) >= self.max_failures:
                waits.append(int(q[0] + self.window_s - now) + 1)
        return max(waits, default=0)

    def acquire(self, keys: list[str], now: float | None = None) -> tuple[Ticket | None, int]:
        """Book one attempt against every key, or refuse it.

        Returns (ticket, 0) when the attempt may go ahead, else (None, seconds to wait).
        """
        now = time.time() if now is None else now
        cut = tuple(k[:MAX_KEY_CHARS] for k in keys)
        with self._lock:
            wait = self._wait(cut, now)
            if wait:
                return None, wait
            for k in cut:
                q = self._fails.get(k)
                if q is None:
                    q = self._fails[k] = deque(maxlen=self.max_failures)
                q.append(now)
                self._fails.move_to_end(k)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        return Ticket(cut, now), 0

    def succeed(self, ticket: Ticket, clear: tuple[str, ...] = ()) -> None:
        """The password was right: hand back the booking, and forget the `clear` keys."""
        with self._lock:
            for k in ticket.keys:
                q = self._fails.get(k)
                if q is not None:
                    # The booking may already have left the window.
                    with contextlib.suppress(ValueError):
                        q.remove(ticket.at)
                    if not q:
                        del self._fails[k]
            for k in clear:
                self._fails.pop(k[:MAX_KEY_CHARS], None)

    def retry_after(self, keys: list[str], now: float | None = None) -> int:
        """Seconds to wait if any key is over the limit, else 0. Records nothing."""
        now = time.time() if now is None else now
        with self._lock:
            return self._wait(tuple(k[:MAX_KEY_CHARS] for k in keys), now)

    def held(self) -> tuple[int, int]:
        """(keys held, characters in those keys), for tests and metrics."""
        with self._lock:
            return len(self._fails), sum(len(k) for k in self._fails)
