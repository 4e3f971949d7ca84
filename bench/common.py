"""Helpers shared by the benchmarks: medians over repeats, printed side by side."""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def corpus_batches(
    data: Path, accounts: int, hours: float
) -> tuple[list[bytes], list[list[bytes]]]:
    """The benchmarks' generated corpus (seed 4242, cached under `data`): its lines, and
    the same lines in replay's batch size."""
    from streams.replay.reader import BATCH_LINES
    from synth.generate import generated

    events, _ = generated(data, accounts, hours, seed=4242)
    lines = [ln for ln in gzip.decompress(events.read_bytes()).split(b"\n") if ln]
    return lines, [lines[i : i + BATCH_LINES] for i in range(0, len(lines), BATCH_LINES)]
