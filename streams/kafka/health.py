"""Worker health: a pure decision over what the worker knows, served at GET /health."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthInputs:
    now: float  # monotonic seconds
    in_recovery: bool
    recovery_since: float | None  # monotonic start of the current recovery
    last_progress: float  # monotonic time of the last processed batch
    lag: int  # messages behind on owned input partitions (known positions only)
    owned_partitions: int
    started: bool  # the Faust app finished starting
    consumed: int = 0  # input records taken in since start, as vigil_events_consumed_total
    processed: int = 0  # events scored in closed windows since start, as vigil_events_processed


def evaluate(h: HealthInputs, recovery_stuck_s: float, stall_s: float) -> tuple[int, dict]:
    body = {
        "in_recovery": h.in_recovery,
        "lag": h.lag,
        "owned_partitions": h.owned_partitions,
        "events_consumed": h.consumed,
        "events_processed": h.processed,
        "seconds_since_progress": round(h.now - h.last_progress, 1),
    }
    if not h.started:
        return 503, {**body, "status": "starting", "reason": "worker is still starting"}
    if h.in_recovery and h.recovery_since is not None:
        took = h.now - h.recovery_since
        body["recovery_seconds"] = round(took, 1)
        if took > recovery_stuck_s:
            reason = f"table recovery has run for {took:.0f}s (limit {recovery_stuck_s:.0f}s)"
            return 503, {**body, "status": "recovery_stuck", "reason": reason}
        return 200, {**body, "status": "recovering"}
    idle = h.now - h.last_progress
    if h.lag > 0 and idle > stall_s:
        reason = f"{h.lag} messages waiting and no progress for {idle:.0f}s"
        return 503, {**body, "status": "stalled", "reason": reason}
    return 200, {**body, "status": "consuming"}
