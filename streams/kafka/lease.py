"""Whether a checkpoint may write: the consumer's group lease, as the processor uses it.

The lease itself (internals.GroupLease) watches aiokafka's heartbeats; this module holds
what the checkpoint does with it, and the stand-in before the consumer starts.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NoLease:
    """Before the consumer starts: no partition held, nothing in doubt."""

    session_timeout_s: float = math.inf

    def holds(self) -> bool:
        return True

    def out(self) -> bool:
        return False


NO_LEASE = NoLease()


async def held_for_writes(lease: Any) -> bool:
    """Whether the lease still holds once a checkpoint's state is encoded, which can take
    seconds; a worker frozen meanwhile (SIGSTOP) would write at once on resuming. In doubt
    it waits for the consumer thread's next heartbeat answer: held again, True; out of
    the group, False. Still in doubt after the session timeout, it raises, and the worker
    stops: its engines' journals are taken by then, so a later checkpoint would miss
    their events, while a restart rebuilds from the changelog."""
    deadline = time.monotonic() + lease.session_timeout_s
    while not lease.holds():
        if lease.out():
            return False
        if time.monotonic() > deadline:
            raise RuntimeError(
                "no heartbeat answered for the session timeout during a checkpoint; "
                "stopping so that a restart resumes from the changelog"
            )
        await asyncio.sleep(0.05)
    return True
