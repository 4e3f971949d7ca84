"""A flood of new accounts against the engine's byte budget.

1M events from 1M accounts never seen before, in one hour of event time, through one
Engine with `engine.state_budget_bytes` set (256 MB by default): the shape of a sign-up
or key-stuffing flood. Reports the process's peak RSS, the engine's own count of its state
bytes against the budget (peak and at the end, by part), what was evicted or closed early,
and throughput. Lines are made batch by batch, so they do not sit in memory beside the
engine; making them is timed apart.

    python bench/bench_flood.py [--events 1000000] [--budget-mb 256] [--hours 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.core.config import VigilConfig  # noqa: E402
from streams.engine.engine import Engine  # noqa: E402
from streams.replay.reader import BATCH_LINES  # noqa: E402

T0 = 1_790_812_800.0  # 2026-10-01T00:00:00Z
MB = 1024 * 1024


def flood_batches(n: int, span_s: float, size: int = BATCH_LINES) -> Iterator[list[bytes]]:
    """n events in time order, each from a new account with its own client and address.

    Addresses are spread (a multiplicative hash of the account number), so that few
    accounts share a /24, and each account has its own user agent: this measures memory
    and throughput, not the campaign alerts a shared block or client would raise."""
    for start in range(0, n, size):
        batch = []
        for i in range(start, min(start + size, n)):
            ts = T0 + span_s * i / n
            h = (i * 2654435761 + 12345) % (1 << 32)
            batch.append(
                b'{"event_id":"flood-%d","ts":%.3f,"account_id":"flood_%08d",'
                b'"endpoint":"chat.completions","model":"gpt-small","prompt_tokens":%d,'
                b'"completion_tokens":%d,"status":200,"ip":"%d.%d.%d.%d","country":"US",'
                b'"user_agent":"signup-bot/%d","plan":"free","account_created":%.0f,'
                b'"finish_reason":"stop","prompt_hash":"%016x"}'
                % (i, ts, i, 20 + i % 300, 10 + i % 200, h >> 24, h >> 16 & 255,
                   h >> 8 & 255, h & 255, i, ts - 120, h * 31 + i)
            )  # fmt: skip
        yield batch


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--budget-mb", type=int, default=256)
    ap.add_argument("--hours", type=float, default=1.0)
    args = ap.parse_args()
    cfg = VigilConfig()
    engine_cfg = dataclasses.replace(cfg.engine, state_budget_bytes=args.budget_mb * MB)
    eng = Engine(dataclasses.replace(cfg, engine=engine_cfg), clock=lambda: T0 + 2 * 86_400)
    rss_start = rss_mb()
    peak_state = 0
    alerts = dead = 0
    making = engine_s = 0.0
    batches = flood_batches(args.events, args.hours * 3600)
    while True:
        t = time.perf_counter()
        lines = next(batches, None)
        making += time.perf_counter() - t
        if lines is None:
            break
        t = time.perf_counter()
        out = eng.process_lines(lines)
        engine_s += time.perf_counter() - t
        alerts += len(out.alerts)
        dead += len(out.dead_letters)
        peak_state = max(peak_state, eng.usage().total)
    t = time.perf_counter()
    out = eng.flush()
    engine_s += time.perf_counter() - t
    alerts += len(out.alerts)
    dead += len(out.dead_letters)
    u = eng.usage()
    budget = args.budget_mb * MB
    print(f"flood: {args.events:,} events from {args.events:,} new accounts in {args.hours:g} h")
    print(f"budget            : {budget / MB:,.0f} MB")
    print(
        f"engine state peak : {peak_state / MB:,.1f} MB ({peak_state / budget:.0%} of the budget)"
    )
    print(
        f"engine state end  : {u.total / MB:,.1f} MB: accounts {u.accounts / MB:,.1f} "
        f"(arrays {u.account_arrays / MB:,.1f}, ids and index {u.account_held / MB:,.1f}), "
        f"open windows {u.open_windows / MB:,.1f}, dedup {u.dedup / MB:,.1f}, "
        f"campaign {u.campaign / MB:,.1f}"
    )
    print(
        f"accounts held     : {len(eng.table):,} (capacity {eng.table.capacity:,}); "
        f"{u.accounts / max(len(eng.table), 1):,.0f} bytes per account held"
    )
    print(
        f"evicted           : {eng.budget_evicted:,} accounts for the budget, "
        f"{eng.windows_forced:,} windows closed early, {eng.windows_split:,} scored in parts, "
        f"{eng.dedup_turned_early:,} early dedup turnovers; {alerts:,} alerts, "
        f"{dead:,} dead letters"
    )
    print(f"peak RSS          : {rss_mb():,.0f} MB (after start-up {rss_start:,.0f} MB)")
    print(
        f"throughput        : {args.events / engine_s:,.0f} events/s in the engine "
        f"({engine_s:.1f} s; making the lines {making:.1f} s apart)"
    )
    if peak_state > budget:
        sys.exit("engine state passed its budget")


if __name__ == "__main__":
    main()
