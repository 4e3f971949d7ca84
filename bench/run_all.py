"""Run every benchmark in turn (each prints its own medians and ratios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = (
    "bench_replay.py",
    "bench_onnx.py",
    "bench_series.py",
    "bench_population.py",
    "bench_console.py",
    "bench_kafka.py",
    "bench_checkpoint.py",
    "bench_shadow.py",
)


def main() -> int:
    failed = []
    for name in BENCHES:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
