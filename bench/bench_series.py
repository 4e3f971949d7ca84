"""Throughput and memory of the series detectors.

Scores many series in batches, as the engine does once per closed window: every call
carries one row per series, with `n_metrics` metrics each. Prints the median points/s
over repeats per batch size for the robust detector the engine uses and, measured in the
same run, the plain one it replaced with the ratio of the two (so a busy machine slows both
alike), then the single-row path and state bytes per series.
Usage: python bench/bench_series.py [--series 10000] [--steps 50] [--metrics 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from detectors.series import SeriesDetector
from detectors.series_robust import RobustSeriesDetector

TARGET = 1_000_000  # points per second per process, scoring 10k series per call
STATE_LIMIT = 1024  # bytes per series per metric


def run_batches(
    n_series: int, steps: int, n_metrics: int, seed: int = 0, cls=RobustSeriesDetector
) -> float:
    """Points (series x metrics x steps) per second for one pass."""
    rng = np.random.default_rng(seed)
    det = cls(n_metrics=n_metrics)
    det.ensure_capacity(n_series)
    slots = rng.permutation(n_series)
    values = rng.lognormal(3, 0.6, (steps, n_series, n_metrics))
    # Warm the state so the timed steps see a steady series, not a cold start.
    for t in range(3):
        det.score_learn(slots, np.full(n_series, t * 300.0), values[t])
    t0 = time.perf_counter()
    for t in range(steps):
        det.score_learn(slots, np.full(n_series, (t + 3) * 300.0), values[t])
    return n_series * n_metrics * steps / (time.perf_counter() - t0)


def run_single(points: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    det = RobustSeriesDetector()
    vals = rng.normal(10, 1, (points, 1))
    slot = np.zeros(1, dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(points):
        det.score_learn(slot, np.array([i * 300.0]), vals[i : i + 1])
    return points / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--metrics", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print(f"series detectors, {args.steps} steps per pass, median of {args.repeats} passes")
    head = f"{'series/call':>12} {'metrics':>8} {'robust pts/s':>13} {'plain pts/s':>12}"
    print(f"{head} {'ratio':>6} {'vs 1M target':>13}")
    sizes = sorted({1_000, args.series, 10 * args.series})
    for n in sizes:
        for m in sorted({1, args.metrics, 4}):
            steps = max(args.steps * args.series // n, 5)
            rates = {}
            for cls in (RobustSeriesDetector, SeriesDetector):
                runs = [run_batches(n, steps, m, seed=r, cls=cls) for r in range(args.repeats)]
                rates[cls] = statistics.median(runs)
            new, old = rates[RobustSeriesDetector], rates[SeriesDetector]
            print(
                f"{n:>12} {m:>8} {new:>13,.0f} {old:>12,.0f} {new / old:>6.2f} {new / TARGET:>12.2f}x"
            )
    single = statistics.median(run_single(3_000, seed=r) for r in range(args.repeats))
    print(f"{'1 (single)':>12} {1:>8} {single:>13,.0f}")
    for m in (1, 4, 8):
        new = RobustSeriesDetector(n_metrics=m).state_bytes_per_slot()
        old = SeriesDetector(n_metrics=m).state_bytes_per_slot()
        print(
            f"state per series with {m} metric(s): {new} bytes ({new / m:.0f} per metric, "
            f"limit {STATE_LIMIT}); plain detector {old} bytes"
        )


if __name__ == "__main__":
    main()
