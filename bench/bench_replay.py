"""`vigil replay` throughput on ~1M generated events, in one process.

Reports, side by side in one run, the median of several runs of:
  - decoding alone;
  - the engine core on lines already in memory (decode, features, every detector, fusion);
  - `vigil replay` end to end: the gzip file read and inflated, the engine, alerts and
    dead letters written to files, exactly as the command does it.

    python bench/bench_replay.py [--accounts 2800] [--hours 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_time  # noqa: E402
from streams.contract.events import decode_lines  # noqa: E402
from streams.engine.engine import Engine  # noqa: E402
from streams.replay.reader import BATCH_LINES, open_input, replay  # noqa: E402
from streams.runtime.sinks import FileSink  # noqa: E402
from synth.generate import generated  # noqa: E402


def breakdown(batches: list[list[bytes]]) -> None:
    """CPU time per stage and per detector, from one instrumented run."""
    import streams.engine.engine as E

    spent: dict[str, float] = {}
    rows = [0]

    def timed(key, fn):
        def run(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[key] = spent.get(key, 0.0) + time.process_time() - t

        return run

    originals = (E.decode_lines, E.window_features, E.fuse)
    E.decode_lines = timed("decode", E.decode_lines)
    E.window_features = timed("features", E.window_features)
    E.fuse = timed("fusion", E.fuse)
    try:
        eng = Engine()
        for name, det in eng.detectors.items():
            det.score_learn = timed(name, det.score_learn)
        eng.on_features = lambda b: rows.__setitem__(0, rows[0] + len(b))
        t = time.process_time()
        for b in batches:
            eng.process_lines(b)
        eng.flush()
        total = time.process_time() - t
    finally:
        E.decode_lines, E.window_features, E.fuse = originals
    n = sum(len(b) for b in batches)
    print(f"cpu per stage ({n:,} events, {rows[0]:,} account-windows scored):")
    for key, v in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(
            f"  {key:<11} {v:6.2f} s  {v / n * 1e6:5.2f} us/event  {v / rows[0] * 1e6:7.2f} us/account-window"
        )
    print(f"  {'other':<11} {total - sum(spent.values()):6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2800)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    events, _ = generated(args.data, args.accounts, args.hours, seed=4242)
    lines = [ln for ln in gzip.decompress(events.read_bytes()).split(b"\n") if ln]
    batches = [lines[i : i + BATCH_LINES] for i in range(0, len(lines), BATCH_LINES)]
    n = len(lines)

    def full() -> None:
        eng = Engine()
        for b in batches:
            eng.process_lines(b)
        eng.flush()

    def decode_only() -> None:
        for b in batches:
            decode_lines(b, now_ts=2e9)

    def end_to_end() -> None:
        alerts = FileSink(args.data / "bench-alerts.jsonl")
        dead = FileSink(args.data / "bench-dead-letters.jsonl")

        def sink(out) -> None:
            alerts.write([a.to_json() for a in out.alerts])
            dead.write([d.to_json() for d in out.dead_letters])

        with open_input(str(events)) as fh:
            replay(Engine(), fh, sink)
        alerts.close()
        dead.close()

    breakdown(batches)
    d_med, _ = median_time(decode_only, args.repeats)
    f_med, f_all = median_time(full, args.repeats)
    e_med, e_all = median_time(end_to_end, args.repeats)
    print(f"events: {n:,} ({args.accounts} accounts x {args.hours:g} h), repeats: {args.repeats}")
    print(f"decode only      : {n / d_med:>10,.0f} events/s (median {d_med:.2f} s)")
    print(
        f"vigil replay core: {n / f_med:>10,.0f} events/s (median {f_med:.2f} s, runs {[round(t, 2) for t in f_all]})"
    )
    print(
        f"vigil replay file : {n / e_med:>10,.0f} events/s (median {e_med:.2f} s, runs {[round(t, 2) for t in e_all]})"
    )
    print(f"decode share of core run: {d_med / f_med:.0%}")


if __name__ == "__main__":
    main()
