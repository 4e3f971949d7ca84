"""The worker's malloc settings (streams/runtime/process.py), each in a fresh interpreter so
that the test process keeps glibc's defaults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys


def test_runs_on_glibc() -> None:
    # What the tests below probe; the worker skips its malloc settings elsewhere.
    assert platform.libc_ver()[0] == "glibc"


# Prints whether tune_malloc applied, then the bytes glibc holds in mmapped blocks before
# and while an 8 MiB buffer, like a fetch response, is alive.
PROBE = """
import ctypes, sys
from streams.runtime.process import tune_malloc

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = tune_malloc() if sys.argv[1] == "tune" else None
before = libc.mallinfo2().hblkhd
buf = bytearray(8 << 20)
print(applied, before, libc.mallinfo2().hblkhd)
"""


def probe(mode: str, **env: str) -> tuple[str, int, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
        env={**clean, **env},
    )  # fmt: skip
    applied, before, during = out.stdout.split()
    return applied, int(before), int(during)


def test_large_buffers_come_from_the_heap_once_tuned() -> None:
    _, before, during = probe("plain")
    assert during - before >= 8 << 20  # glibc's default: a fresh mapping
    applied, before, during = probe("tune")
    assert applied == "True"
    assert during == before  # served from the heap


def test_the_operators_own_malloc_settings_win() -> None:
    applied, before, during = probe("tune", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False"
    assert during - before >= 8 << 20
