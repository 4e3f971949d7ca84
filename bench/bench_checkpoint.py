"""What a worker checkpoint costs per partition in a live stream, with and without journals.

In a live stream event time runs with wall time, so each partition's engine holds every
event of its open window (5 minutes plus the lateness) at every checkpoint. This fills one
partition's window to 5 s before its end at a given stream rate, adds the next 5 s, and
times, side by side: encoding the whole state (open events inside it), and what a
checkpoint encodes with journals (the state without open events, plus the 5 s of new ones).
    .venv/bin/python bench/bench_checkpoint.py [--rates 1000 3000] [--partitions 8]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import median_time  # noqa: E402
from streams.core.config import VigilConfig  # noqa: E402
from streams.engine.engine import Engine  # noqa: E402
from streams.kafka import checkpoint  # noqa: E402
from synth.generate import generated  # noqa: E402

START = 1_790_812_800.0  # a window boundary
INTERVAL_S = 5.0


def retimed(src: list[dict], n: int, t0: float, t1: float, tag: str) -> list[bytes]:
    """n events spread evenly over [t0, t1), with fresh ids."""
    out = []
    for i in range(n):
        d = dict(src[i % len(src)], ts=t0 + (t1 - t0) * i / n, event_id=f"{tag}{i}")
        out.append(orjson.dumps(d))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    events, _ = generated(args.data, 300, 12, seed=77)
    src = []
    for line in gzip.decompress(events.read_bytes()).splitlines():
        d = orjson.loads(line)
        if isinstance(d, dict):
            src.append(d)
    print(f"per partition, {args.partitions} partitions, checkpoint every {INTERVAL_S:g} s, "
          f"median of {args.repeats}")  # fmt: skip
    for rate in args.rates:
        measure(src, rate, args.partitions, args.repeats)


def measure(src: list[dict], rate: int, partitions: int, repeats: int) -> None:
    w = VigilConfig().engine.window_s
    per_s = rate / partitions
    eng = Engine()
    eng.journal_pending = True
    before = retimed(src, int(per_s * (w - INTERVAL_S)), START, START + w - INTERVAL_S, "a")
    for i in range(0, len(before), 5000):
        eng.process_lines(before[i : i + 5000])
    eng.take_journal()  # written by earlier checkpoints
    eng.process_lines(retimed(src, int(per_s * INTERVAL_S), START + w - INTERVAL_S, START + w, "b"))
    open_events = sum(len(p) for p in eng.pending)
    whole_s, _ = median_time(lambda: checkpoint.encode_state(eng.state_dict()), repeats)
    whole_b = len(checkpoint.encode_state(eng.state_dict()))
    lines, _ = eng.take_journal()

    def journal_checkpoint() -> tuple[bytes, bytes]:
        state = checkpoint.encode_state(eng.state_dict(pending=False))
        return state, checkpoint.encode_journal(lines)

    jour_s, _ = median_time(journal_checkpoint, repeats)
    jour_b = sum(map(len, journal_checkpoint()))
    print(f"{rate:>6,} events/s: {open_events:>7,} open events; whole state "
          f"{whole_s * 1e3:6.0f} ms, {whole_b / 1e6:5.1f} MB; with journals "
          f"{jour_s * 1e3:6.1f} ms, {jour_b / 1e6:5.2f} MB ({len(lines):,} new events); "
          f"ratio {whole_s / jour_s:4.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
