"""Child processes that tests and benchmarks start."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """preexec_fn of a process a test starts (a worker, Prometheus): SIGTERM it when the
    process that started it dies. A pytest killed by a signal runs no finalizer, and what
    it had started went on consuming and took the CPU from the runs that followed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
