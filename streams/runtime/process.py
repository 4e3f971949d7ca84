"""Process-wide settings the Kafka worker applies before it starts its engines, and its
exit on a fault it cannot get past."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import sys

log = logging.getLogger("vigil.worker")

# Young collections after this many container allocations instead of CPython's 700.
GC_THRESHOLDS = (100_000, 50, 100)
# Seconds a thread may hold the GIL while another waits for it; CPython's default is 5 ms.
SWITCH_INTERVAL_S = 0.02
# glibc's mallopt parameters, and what the worker sets them to (tune_malloc).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
# An operator's own malloc settings win over the worker's.
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


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


def tune_malloc() -> bool:
    """Serves blocks of up to 64 MiB from the heap rather than fresh mmaps, and returns
    freed heap to the system only past 256 MiB; whether the settings were applied.

    Every fetch response (up to 4 MiB per partition, about 20 MB a fetch) is read into a
    new buffer, copied out once or twice and freed. Above glibc's mmap threshold each
    such block is a fresh mapping whose pages fault in, zero-filled, as the bytes are
    copied, and that happens in the Kafka client's thread with the GIL held, so the
    engines wait for it. Reused heap blocks are already mapped. Side by side on the
    benchmark's 4 h topic the worker was ahead in nine rounds of ten under at_least_once
    and five of six under exactly_once; peak memory stayed within its usual spread
    (docs/kafka-measured.md, "glibc's heap"). Only on glibc; skipped when the operator
    set glibc's malloc variables."""
    if platform.libc_ver()[0] != "glibc" or any(k in os.environ for k in MALLOC_ENV):
        return False
    libc = ctypes.CDLL(None)
    done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done


def exit_at_once(line: str, status: int) -> None:
    """`line` at CRITICAL, then exit with `status`. For a worker that cannot go on and
    whose restart cannot either: Faust's crash path prints a traceback and helps nothing.
    Exiting so is as safe as kill -9, which the fault soak covers: nothing after the last
    commit is lost, it is read again."""
    log.critical("%s", line)
    logging.shutdown()
    os._exit(status)
