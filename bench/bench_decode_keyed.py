"""The compiled decoder's walk before and after keyed codes (issue 19), side by side.

Builds `streams/contract/_decode.c` as it was at a git revision (default: the last one with the
unkeyed hash) next to the current build, loads both into this process and times their
`decode` on the same batches of generated events, alternating, median of the repeats.
CPU time (process_time) is reported beside wall time, because a shared machine's wall
time says more about its neighbours than about the code.

    python bench/bench_decode_keyed.py [--rev 6bb375e] [--accounts 2800] [--hours 24]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import corpus_batches  # noqa: E402
from streams.contract import _decode  # noqa: E402
from streams.contract.events import decode_lines  # noqa: E402


def _source_at(rev: str) -> bytes:
    """The decoder's C source at `rev`: it lived in streams/ before the contract package."""
    for path in ("streams/contract/_decode.c", "streams/_decode.c"):
        got = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True)
        if got.returncode == 0:
            return got.stdout
    raise SystemExit(f"bench_decode_keyed: no _decode.c at revision {rev}")


def build_at(rev: str, out: Path):
    """The decoder of `rev`, compiled as setup builds it, loaded beside the current one."""
    src = out / "_decode_old.c"
    src.write_bytes(_source_at(rev))
    so = out / ("_decode" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-O3", "-std=c11", "-shared", "-fPIC", f"-I{include}", str(src),
                    "-o", str(so)], check=True)  # fmt: skip
    # Same init symbol, own file: a second module object, not the one in sys.modules.
    loader = importlib.machinery.ExtensionFileLoader("streams.contract._decode", str(so))
    spec = importlib.util.spec_from_file_location("streams.contract._decode", so, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    assert mod is not _decode and not hasattr(mod, "set_key")
    return mod


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", default="6bb375e")
    ap.add_argument("--accounts", type=int, default=2800)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    lines, batches = corpus_batches(args.data, args.accounts, args.hours)
    n = len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        old = build_at(args.rev, Path(tmp))
        runs: dict[str, list[tuple[float, float]]] = {"old": [], "new": [], "lines": []}
        for _ in range(args.repeats):
            runs["old"].append(timed(lambda: [old.decode(b, 65_536) for b in batches]))
            runs["new"].append(timed(lambda: [_decode.decode(b, 65_536) for b in batches]))
            runs["lines"].append(timed(lambda: [decode_lines(b, now_ts=2e9) for b in batches]))
    print(f"events: {n:,}, repeats: {args.repeats}, medians")
    names = {
        "old": f"C walk, unkeyed hash ({args.rev})",
        "new": "C walk, SipHash-2-4 + account check",
        "lines": "decode_lines (C walk + columns)",
    }
    for key, label in names.items():
        wall = statistics.median(w for w, _ in runs[key])
        cpu = statistics.median(c for _, c in runs[key])
        print(f"{label:<38}: {n / cpu:>10,.0f} events/s CPU ({cpu / n * 1e9:5.0f} ns/event), "
              f"wall {wall:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
