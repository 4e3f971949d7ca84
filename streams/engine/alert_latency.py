"""Event-to-alert latency: how long after the stream reached a window's end its alert left.

The engine closes a window when the watermark (newest event time minus the allowed
lateness) passes its end, so on a live stream an alert leaves about `allowed_lateness_s`
after the first event at or past the window's end arrived, plus processing. This measures
exactly that span in wall time: for each batch that advanced the newest event time we keep
(newest event time, wall time the batch arrived); an alert for a window ending at E is
timed from the first batch whose newest event reached E. It needs no per-event state, and
both runners get it because it lives in `Engine.process_lines`.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

# Seconds. The objective's threshold (120 s) must be a bucket bound; see
# deploy/prometheus/rules/vigil-slo.yml.
ALERT_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90, 120, 180, 300, 600, 1800)


class AlertLatency:
    def __init__(self, histogram: Any, clock=time.time) -> None:
        self.histogram = histogram
        self.clock = clock
        self._reached: deque[tuple[float, float]] = deque()  # (newest event ts, arrival wall)

    def batch_arrived(self, before_ts: float, after_ts: float, arrived: float) -> None:
        """Record that a batch arriving at wall time `arrived` moved the newest event time."""
        if after_ts > before_ts:
            self._reached.append((after_ts, arrived))

    def alerts_emitted(self, window_ends: Iterable[float], closed_until: float) -> None:
        now = self.clock()
        keys = [ts for ts, _ in self._reached]
        for end in window_ends:
            i = bisect.bisect_left(keys, end)
            if i < len(keys):  # windows closed by a final flush were never reached: skip
                self.histogram.observe(max(now - self._reached[i][1], 0.0))
        # Entries that only cover windows already closed are never looked up again.
        while len(self._reached) > 1 and self._reached[1][0] < closed_until:
            self._reached.popleft()


def window_ends(alerts: Iterable[Any]) -> list[float]:
    """Epoch seconds of each alert's window end (RFC 3339 in the alert contract)."""
    return [datetime.fromisoformat(a.window["end"]).timestamp() for a in alerts]
