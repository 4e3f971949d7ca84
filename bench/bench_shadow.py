"""What a shadow model costs: the engine core with and without a challenger beside it.

The challenger is the shipped model itself, so the shadow does a full-size classifier
call and a fusion per window (streams/engine/shadow.py). Runs alternate (plain, shadow,
plain, ...) so both see the same machine load; medians of wall and CPU time side by side.

    python bench/bench_shadow.py [--accounts 1000] [--hours 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import corpus_batches  # noqa: E402
from detectors.classifier import DEFAULT_MODEL  # noqa: E402
from streams.core.config import VigilConfig  # noqa: E402
from streams.engine.engine import Engine  # noqa: E402
from streams.engine.shadow import build_shadow  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    lines, batches = corpus_batches(args.data, args.accounts, args.hours)
    cfg = VigilConfig()

    def run(shadow: bool) -> tuple[float, float, int]:
        eng = Engine(cfg, shadow=build_shadow(cfg, str(DEFAULT_MODEL)) if shadow else None)
        shadowed = 0
        w, c = time.perf_counter(), time.process_time()
        for b in batches:
            shadowed += len(eng.process_lines(b).shadow_alerts)
        shadowed += len(eng.flush().shadow_alerts)
        return time.perf_counter() - w, time.process_time() - c, shadowed

    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.repeats):
        for shadow in (False, True):
            wall, cpu, _n = run(shadow)
            times[shadow].append((wall, cpu))
    n = len(lines)
    print(f"events: {n:,} ({args.accounts} accounts x {args.hours:g} h), repeats: {args.repeats}")
    med = {}
    for shadow, label in ((False, "engine alone      "), (True, "engine + shadow   ")):
        wall = statistics.median(t[0] for t in times[shadow])
        cpu = statistics.median(t[1] for t in times[shadow])
        med[shadow] = (wall, cpu)
        print(f"{label}: {n / wall:>9,.0f} events/s (median wall {wall:.2f} s, cpu {cpu:.2f} s)")
    print(
        f"shadow cost: wall x{med[True][0] / med[False][0]:.2f}, cpu x{med[True][1] / med[False][1]:.2f}"
    )


if __name__ == "__main__":
    main()
