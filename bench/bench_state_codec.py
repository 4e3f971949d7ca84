"""The one state codec beside what each runner used before it, on the same engine state.

The state is the one `vigil replay --state` saves at the end of a corpus (the demo's
parameters by default: 2,000 accounts, 24 hours, seed 7). Side by side, medians of rounds
that interleave them, so a busy machine slows each alike: the plain
pickle replay and warm wrote before the codec, the worker's encoder and decoder before it
moved into streams/runtime/checkpoint_codec.py (reproduced below), and the codec.
    .venv/bin/python bench/bench_state_codec.py [--events EVENTS.jsonl.gz] [--repeats 5]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import median_time  # noqa: E402
from streams.core.config import VigilConfig  # noqa: E402
from streams.replay.warm import warm_engine  # noqa: E402
from streams.runtime.checkpoint_codec import decode_state, encode_state  # noqa: E402
from synth.generate import generated  # noqa: E402
from tests.plugins.old_checkpoint_format import old_worker_decode, old_worker_encode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    events = args.events or generated(args.data, 2000, 24, seed=7)[0]
    engine, summary = warm_engine(VigilConfig(), [str(events)])
    state = engine.state_dict()
    print(f"state of {events} after {summary.lines:,} lines, {summary.accounts:,} accounts; "
          f"median of {args.repeats}")  # fmt: skip
    rows = [
        ("replay/warm before: pickle", lambda: pickle.dumps(state, protocol=5), pickle.loads),
        ("worker before: VGS2 encoder", lambda: old_worker_encode(state), old_worker_decode),
        ("codec (replay, warm, worker)", lambda: encode_state(state), decode_state),
    ]
    times: dict[str, list[list[float]]] = {name: [[], []] for name, _, _ in rows}
    blobs = {name: encode() for name, encode, _ in rows}
    for _ in range(args.repeats):
        for name, encode, decode in rows:
            times[name][0].append(median_time(encode, 1)[0])
            times[name][1].append(median_time(lambda b=blobs[name], d=decode: d(b), 1)[0])
    print(f"{'':30} {'encode ms':>10} {'decode ms':>10} {'size MB':>9}")
    for name, _, _ in rows:
        enc, dec = (statistics.median(t) * 1e3 for t in times[name])
        print(f"{name:30} {enc:10.0f} {dec:10.0f} {len(blobs[name]) / 1e6:9.1f}")


if __name__ == "__main__":
    main()
