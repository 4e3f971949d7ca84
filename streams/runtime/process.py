"""Process-wide settings the Kafka worker applies before it starts its engines, and its
exit on a fault it cannot get past."""

from __future__ import annotations

import gc
import logging
import os
import sys

log = logging.getLogger("vigil.worker")

# Young collections after this many container allocations instead of CPython's 700.
GC_THRESHOLDS = (100_000, 50, 100)
# Seconds a thread may hold the GIL while another waits for it; CPython's default is 5 ms.
SWITCH_INTERVAL_S = 0.02


def tune_gc() -> None:
    """Runs the cycle collector far less often.

    The engine keeps its data in numpy arrays and bytes, which the collector does not
    walk, and it creates no reference cycles on purpose; but each batch makes and drops
    hundreds of thousands of small lists and dicts. At the default threshold those start a
    young collection every 700 allocations and push survivors into older generations that
    are walked again and again: about 15% of the time of eight partition engines on a
    dense corpus, and a third of the time spent building console snapshots. `vigil
    replay`, one engine, showed no difference beyond noise and keeps the defaults.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def tune_threads() -> None:
    """Lets the engines' thread hold the GIL for 20 ms instead of 5 ms at a stretch.

    The worker's main thread runs the engines and is the bottleneck; the Kafka client's
    thread fetches ahead and only needs the GIL in short bursts. At 5 ms it took the GIL
    from the engines about every 5 ms during a fetch, and each handover costs the engines
    their warm caches. Side by side over three rounds, 20 ms gave 85 161 events/s against
    80 061 (the engines' own time 5.2 s against 5.8 s). Heartbeats and the web endpoints
    wait at most that much longer, far inside their timeouts.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def exit_at_once(line: str, status: int) -> None:
    """`line` at CRITICAL, then exit with `status`. For a worker that cannot go on and
    whose restart cannot either: Faust's crash path prints a traceback and helps nothing.
    Exiting so is as safe as kill -9, which the fault soak covers: nothing after the last
    commit is lost, it is read again."""
    log.critical("%s", line)
    logging.shutdown()
    os._exit(status)
