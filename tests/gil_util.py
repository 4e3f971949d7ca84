"""Telling whether a call holds the GIL throughout: a thread that only counts runs meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def assert_lets_threads_run(call: Callable[[], object], min_seconds: float = 0.01) -> None:
    """Fails unless a counting thread advances in the middle half of `call`.

    Only the middle half counts: the thread may hold the GIL for a switch interval on either
    side of the call.
    """
    ticks: list[float] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    took = end - start
    assert took > min_seconds, "the call is too short to tell"
    inside = [x for x in ticks if start + took / 4 < x < end - took / 4]
    assert len(inside) > 100, f"{len(inside)} ticks in the middle of {took:.3f} s"
