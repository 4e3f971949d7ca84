"""How bench_kafka.py runs and reads one `vigil worker`: started from a checkout, its
progress read from /health, its rate, CPU and memory taken while it drains a topic, and the
latency of its alerts once it has settled."""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import orjson

from streams.kafka.routing import partition_for
from tests.plugins.kafka_broker import free_port
from tests.plugins.processes import die_with_parent

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 8
LATENESS_S = 60.0
# Of a 1 h corpus in 5 min windows, the last window and the allowed lateness hold about a
# tenth: scoring 80% needs every window but the last two closed.
PROCESSED_SHARE = 0.8
# How often a worker's progress is read. Every 50 ms, answering /health took 3.5% of an
# exactly_once worker's main thread (py-spy), which the bare drain does not pay. A rate is
# taken over the span between two readings, with the counts read at its ends, so reading
# less often shifts that span by up to one period and does not bias the rate; only the
# rate of taking records in, read once all are in, may count up to one period idle.
POLL_S = 0.25


def start_worker(
    cfg_path: Path, data: Path, extra: tuple = (), tree: Path = REPO
) -> tuple[subprocess.Popen, int]:
    """A worker of the code in `tree` (`python -m streams` there imports its package)."""
    port = free_port()
    log = (data.parent / f"{data.name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--config", str(cfg_path),
         "--data-dir", str(data), "--web-port", str(port), *extra],
        cwd=tree, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"worker did not become healthy; log in {log.name}")


def progress(port: int) -> tuple[float, float]:
    """(consumed, processed) events from /health, every POLL_S: /metrics costs the worker
    about 13 ms of its main thread to render against 2 ms for /health."""
    import urllib.error

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # 503 while starting or stalled: still a count
        body = exc.read()
    d = orjson.loads(body)
    return float(d.get("events_consumed", 0)), float(d.get("events_processed", 0))


def gauges(port: int, *names: str) -> list[float]:
    """Unlabelled gauges from one reading of the worker's /metrics (NaN for any absent):
    read once a second at most, as rendering it costs the worker's main thread."""
    found: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in names:
                found[name] = float(value.split()[-1])
    return [found.get(name, float("nan")) for name in names]


def paused_partitions(port: int) -> float:
    """Input partitions the worker has paused now (backpressure)."""
    return gauges(port, "vigil_input_paused_partitions")[0]


def wait_settled(port: int, n: int, timeout_s: float = 180.0) -> None:
    """Until the worker has consumed all n events, holds no closed window unscored and has
    checkpointed every partition, for two readings a second apart: then every alert it will
    raise on this input is visible to read_committed readers. Reading the alert topic until
    it went quiet for a few seconds instead lost the slowest alerts under exactly_once,
    whose commits come seconds apart."""
    deadline, calm = time.monotonic() + timeout_s, 0
    while calm < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the latency worker did not settle in {timeout_s:.0f} s")
        consumed, _ = progress(port)
        busy = sum(gauges(port, "vigil_unscored_windows", "vigil_uncheckpointed_partitions"))
        calm = calm + 1 if consumed >= n and busy == 0 else 0
        time.sleep(1.0)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB; 0 where /proc has none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, all threads) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_rate(
    cfg_path: Path,
    data: Path,
    n: int,
    extra: tuple = (),
    trace: Path | None = None,
    tree: Path = REPO,
) -> tuple[float, float, float, float]:
    """(end-to-end rate, rate of taking records in, peak RSS in MiB, CPU µs per event) of
    one worker draining n records. A backlog holds the events of windows waiting for
    campaign figures, so the peak shows what working one off costs in memory. The CPU
    time, from the first reading to the end-to-end mark over the events scored between,
    is less at the mercy of this machine's drift than the rates are, and shows a change
    that costs work where the rates cannot tell it. With `trace`, every reading goes
    there as CSV (seconds, consumed, processed, partitions paused): how far scoring lags
    the input, and whether backpressure held the input meanwhile."""
    proc, port = start_worker(cfg_path, data, extra, tree)
    readings: list[tuple[float, float, float, float]] = []
    t_start = time.perf_counter()
    paused, next_paused = float("nan"), 0.0
    try:
        first = None
        taken_in = end_to_end = None
        deadline = time.monotonic() + 600
        while True:
            c, done = progress(port)
            now = time.perf_counter()
            if trace is not None and now >= next_paused:
                paused, next_paused = paused_partitions(port), now + 1.0
            readings.append((now - t_start, c, done, paused))
            if c > 0 and first is None:
                first = (now, c)
                cpu0, done0 = cpu_seconds(proc.pid), done
            if c >= n and taken_in is None:
                if c == first[1]:
                    # The whole topic went between two readings: no rate to time.
                    raise RuntimeError(
                        f"the worker consumed all {n} events before its progress could be "
                        "read twice; the corpus is too small to time (raise --accounts)"
                    )
                taken_in = (c - first[1]) / (now - first[0])
            if done >= PROCESSED_SHARE * n and end_to_end is None:
                # Conservative: events consumed before the first reading count as not done.
                end_to_end = (done - first[1]) / (now - first[0])
                cpu_us = (cpu_seconds(proc.pid) - cpu0) / (done - done0) * 1e6
            if end_to_end is not None and taken_in is not None:
                return end_to_end, taken_in, peak_rss_mb(proc.pid), cpu_us
            if proc.poll() is not None:
                raise RuntimeError("worker exited")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker scored {done:.0f} of {n} events in 600 s")
            time.sleep(POLL_S)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if trace is not None:
            lines = [f"{t:.3f},{c:.0f},{d:.0f},{p:.0f}" for t, c, d, p in readings]
            head = "seconds,consumed,processed,paused_partitions\n"
            trace.write_text(head + "\n".join(lines) + "\n")


def read_alerts(bootstrap: str, topic: str, idle_s: float = 5.0) -> list:
    from kafka import KafkaConsumer

    # read_committed: under exactly_once an alert counts once its transaction commits.
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      isolation_level="read_committed")  # fmt: skip
    out, last = [], time.monotonic()
    while time.monotonic() - last < idle_s:
        for records in c.poll(timeout_ms=300).values():
            out.extend(records)
            last = time.monotonic()
    c.close()
    return out


def close_times(sent: list) -> dict[int, list[tuple[float, float]]]:
    """Per partition: (watermark, wall time) at each send, watermark non-decreasing."""
    out: dict[int, list[tuple[float, float]]] = {p: [] for p in range(PARTITIONS)}
    high = {p: float("-inf") for p in range(PARTITIONS)}
    for part, ts, wall in sent:
        if ts == ts and ts > high[part]:
            high[part] = ts
            out[part].append((ts - LATENESS_S, wall))
    return out


def latencies(alerts: list, sent: list, partitioner=partition_for) -> list[float]:
    closes = close_times(sent)
    # The watermarks alone, once per partition: rebuilt per alert, this list made the
    # latency phase's summary take minutes on the 4 h corpus.
    keys = {p: [m for m, _ in marks] for p, marks in closes.items()}
    lat = []
    for rec in alerts:
        a = orjson.loads(rec.value)
        end = datetime.fromisoformat(a["window"]["end"].replace("Z", "+00:00")).timestamp()
        part = partitioner(a["account_id"].encode(), PARTITIONS)
        marks = closes[part]
        i = bisect.bisect_left(keys[part], end)
        if i < len(marks):
            lat.append(rec.timestamp / 1000 - marks[i][1])
    return lat
