"""Summarises the progress traces `bench_kafka.py --trace DIR` writes, one line per run:
how far scoring lags the input through the drain, the rates between 20% and 80% of it,
the stalls in scoring, and how often backpressure held input partitions.

    python bench/kafka_trace.py DIR [--events N]

N is the corpus size (the bench prints it); without it, the largest count consumed in
each trace stands in for it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

SHARES = (0.1, 0.2, 0.4, 0.6, 0.8)
STALL_S = 1.5  # scoring standing still this long, while the input is not yet all scored


@dataclass(frozen=True)
class Reading:
    seconds: float
    consumed: float
    processed: float
    paused: float  # input partitions paused, read once a second (nan before the first)


@dataclass(frozen=True)
class Summary:
    lags: dict[float, float]  # share of the corpus -> seconds scoring reached it after input
    consumed_rate: float  # events/s taken in between 20% and 80% of the corpus
    processed_rate: float  # events/s scored between 20% and 80%
    stalls: list[tuple[float, float]]  # (seconds from the first input, length)
    # Of the seconds sampled until 80% is scored, those with some input partition paused.
    paused_share: float


def read_trace(path: Path) -> list[Reading]:
    with path.open() as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:3] != ["seconds", "consumed", "processed"]:
        raise ValueError(
            f"{path}: not a bench_kafka.py trace (no seconds,consumed,processed header)"
        )
    out = []
    for row in rows[1:]:
        values = [float(x) for x in row] + [float("nan")] * (4 - len(row))
        out.append(Reading(*values[:4]))
    return out


def _first(readings: list[Reading], field: str, level: float) -> float | None:
    return next((r.seconds for r in readings if getattr(r, field) >= level), None)


def summarise(readings: list[Reading], events: float) -> Summary:
    start = _first(readings, "consumed", 1.0)
    if start is None:
        raise ValueError("the worker consumed nothing in this trace")
    lags = {}
    for share in SHARES:
        taken = _first(readings, "consumed", share * events)
        scored = _first(readings, "processed", share * events)
        if taken is not None and scored is not None:
            lags[share] = scored - taken

    def rate(field: str) -> float:
        a, b = _first(readings, field, 0.2 * events), _first(readings, field, 0.8 * events)
        return 0.6 * events / (b - a) if a is not None and b is not None and b > a else float("nan")

    stalls, since, last = [], None, None
    for r in readings:
        if r.seconds < start or r.processed >= 0.8 * events:
            continue
        if last is not None and r.processed == last.processed and r.processed > 0:
            since = last.seconds if since is None else since
        else:
            if since is not None and last is not None and last.seconds - since >= STALL_S:
                stalls.append((since - start, last.seconds - since))
            since = None
        last = r
    by_second = {
        int(r.seconds): r.paused
        for r in readings
        if r.seconds >= start and r.processed < 0.8 * events
    }
    sampled = [p for p in by_second.values() if p == p]
    paused = sum(1 for p in sampled if p > 0) / len(sampled) if sampled else float("nan")
    return Summary(lags, rate("consumed"), rate("processed"), stalls, paused)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--events", type=float, default=0.0, help="the corpus size")
    args = ap.parse_args()
    traces = sorted(args.folder.glob("*.csv")) if args.folder.is_dir() else []
    if not traces:
        ap.error(f"{args.folder}: no trace (*.csv) there")
    for path in traces:
        try:
            readings = read_trace(path)
            events = args.events or max((r.consumed for r in readings), default=0.0)
            s = summarise(readings, events)
        except ValueError as exc:
            print(f"{path.name}: {exc}", file=sys.stderr)
            continue
        lags = ", ".join(f"{k:.0%} {v:.1f} s" for k, v in s.lags.items())
        stalls = ", ".join(f"{at:.1f} s for {n:.1f} s" for at, n in s.stalls) or "none"
        paused = (
            f"input partly paused in {s.paused_share:.0%} of the seconds"
            if s.paused_share == s.paused_share
            else "no paused partitions in this trace"
        )
        print(
            f"{path.stem}: lag {lags}; 20-80% taken in {s.consumed_rate:,.0f} /s, scored "
            f"{s.processed_rate:,.0f} /s; stalls of {STALL_S} s or more: {stalls}; {paused}"
        )


if __name__ == "__main__":
    main()
