"""Paced replay: feed the engine at event time times X, or at N events per second.

Without pacing `vigil replay` runs as fast as it can, so a day of traffic lands in one
scrape and every `rate()` panel is a spike. Paced, the embedded runner behaves like a live
stream for dashboards and alert rules, with no broker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Lines per batch while paced: small enough that sleeps are short and the metrics move
# smoothly, large enough that batching overhead stays negligible.
SPEED_BATCH_LINES = 256
BATCHES_PER_S = 20


class PacingError(ValueError):
    """--speed / --rate given wrongly; the message is one line for the user."""


@dataclass
class Pacer:
    speed: float | None = None  # event time runs at this multiple of wall time
    rate: float | None = None  # events per wall second
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _t0: float | None = field(default=None, init=False)
    _ts0: float | None = field(default=None, init=False)
    _lines: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise PacingError("give --speed or --rate, not both")
        for flag, value in (("--speed", self.speed), ("--rate", self.rate)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise PacingError(f"{flag} must be a positive number, got {value:g}")

    @property
    def batch_lines(self) -> int:
        if self.rate is not None:
            return max(1, min(8192, math.ceil(self.rate / BATCHES_PER_S)))
        return SPEED_BATCH_LINES

    def after_batch(self, lines: int, newest_event_ts: float) -> None:
        """Sleep until the wall clock catches up with what has been fed so far."""
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        self._lines += lines
        if self.rate is not None:
            due = self._t0 + self._lines / self.rate
        else:
            if not math.isfinite(newest_event_ts):
                return  # nothing decodable yet: no event time to pace on
            if self._ts0 is None:
                self._ts0 = newest_event_ts
            due = self._t0 + (newest_event_ts - self._ts0) / float(self.speed or 1.0)
        if due > now:
            self.sleep(due - now)
