"""Kafka worker throughput and latency against a local Apache Kafka, side by side.

One run, one broker, one generated corpus:
  1. in each of --rounds rounds, a bare aiokafka consumer drains the input topic, decoding
     each record with orjson, then one `vigil worker` process per variant (default, console
     snapshots at every checkpoint, no snapshots) drains the same records in a fresh
     group: events/s end to end, and the ratio to that round's bare drain. End to end is
     from the worker's first consumed event until it has scored PROCESSED_SHARE of the
     corpus in closed windows (the last window stays open at the end of a finite input):
     a worker can take records in faster than it scores them while windows wait for their
     campaign figures, so the rate at which it takes them in is printed too, not judged;
  2. a fresh worker is fed at 50% of the median rate; latency from producing the event
     that closes a window to the alert for that window appearing on the alert topic.

Uses VIGIL_KAFKA_BOOTSTRAP when set, else starts a private broker with deploy/kafka.
    .venv/bin/python bench/bench_kafka.py [--accounts 20000] [--hours 1] [--rounds 3]
                                          [--guarantee at_least_once|exactly_once|both]
                                          [--partitioner murmur2|crc32]
                                          [--input-partitioner murmur2|crc32]
                                          [--compare KEY=VALUE] [--compare-tree DIR]
                                          [--trace DIR]
`--guarantee both` runs the worker under each guarantee in every round, side by side;
`--compare` adds a worker with other [worker] settings, and `--compare-tree` one of the
code in another checkout (a git worktree of the commit before a change), beside the
default one under each guarantee.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streams.kafka.produce import read_lines  # noqa: E402
from streams.kafka.routing import account_of, partition_for  # noqa: E402
from tests.plugins.kafka_broker import KafkaBroker, free_port, start_private_broker  # noqa: E402
from tests.plugins.processes import die_with_parent  # noqa: E402

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


def start_broker(scratch: Path) -> tuple[str, KafkaBroker | None]:
    if os.environ.get("VIGIL_KAFKA_BOOTSTRAP"):
        return os.environ["VIGIL_KAFKA_BOOTSTRAP"], None
    broker = start_private_broker(scratch)
    return broker.bootstrap, broker


def write_config(
    path: Path,
    bootstrap: str,
    prefix: str,
    guarantee: str,
    group: str = "",
    input_partitioner: str = "murmur2",
    worker: tuple[str, ...] = (),
) -> Path:
    """`worker`: lines of the config's [worker] table, `key = value` each."""
    section = "[worker]\n" + "".join(f"{line}\n" for line in worker) if worker else ""
    path.write_text(
        f"""[kafka]
bootstrap_servers = "{bootstrap}"
input_topic = "{prefix}-usage"
alerts_topic = "{prefix}-alerts"
dead_letter_topic = "{prefix}-dead"
snapshots_topic = "{prefix}-snapshots"
group_id = "{prefix}-vigil{group}"
partitions = {PARTITIONS}
input_partitioner = "{input_partitioner}"
processing_guarantee = "{guarantee}"
{section}"""
    )
    return path


def create_topics(cfg_path: Path) -> None:
    from streams.core.config_load import load_config
    from streams.kafka.settings import WorkerSettings
    from streams.kafka.topics import ensure_topics, topic_specs

    cfg = load_config(cfg_path)
    ensure_topics(cfg.kafka, topic_specs(cfg.kafka, WorkerSettings()))


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner for keyed records (consistent_random: CRC-32 of the
    key), as kcat, confluent-kafka and other non-Java clients place them: unless the worker
    is told (`--input-partitioner crc32`), most accounts land on a partition that is not
    their engine's, and the worker forwards their events."""
    return partition_for(key, partitions, "crc32")


PARTITIONERS = {"murmur2": partition_for, "crc32": crc32_partition}


async def fill(
    bootstrap: str, topic: str, lines: list[bytes], rate: float = 0.0, partitioner=partition_for
) -> list:
    """Sends lines keyed by account; returns (partition, ts, send_wall) per line."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await p.start()
    sent = []
    t0 = time.perf_counter()
    try:
        for i, line in enumerate(lines):
            key = account_of(line)
            part = partitioner(key, PARTITIONS) if key else 0
            await p.send(topic, line, key=key, partition=part)
            sent.append((part, _ts(line), time.time()))
            if rate and i % 100 == 0:
                ahead = i / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await p.flush()
    finally:
        await p.stop()
    return sent


def _ts(line: bytes) -> float:
    try:
        ts = orjson.loads(line)["ts"]
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except Exception:
        return float("nan")


async def bare_drain(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await c.start()
    got, bad, t0 = 0, 0, None
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=20_000)
            if batch and t0 is None:
                t0 = time.perf_counter()
            for records in batch.values():
                for r in records:
                    try:
                        orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        bad += 1  # the corpus carries a few poison lines on purpose
                got += len(records)
    finally:
        await c.stop()
    return n / (time.perf_counter() - t0)


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


def gauge(port: int, name: str) -> float:
    """One unlabelled gauge from the worker's /metrics: read once a second at most, as
    rendering it costs the worker's main thread."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return float("nan")


def paused_partitions(port: int) -> float:
    """Input partitions the worker has paused now (backpressure)."""
    return gauge(port, "vigil_input_paused_partitions")


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
        busy = gauge(port, "vigil_unscored_windows") + gauge(
            port, "vigil_uncheckpointed_partitions"
        )
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
    import bisect

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


def main() -> None:
    ap = argparse.ArgumentParser()
    # Many accounts over a short span: 160 events per second of event time. Each partition's
    # engine pays a fixed cost per window it closes, so sparser corpora (3000 accounts over
    # 4 h: 16 per second) measure those costs more than the stream; a stream that needs a
    # Kafka worker at all is denser still.
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--hours", type=float, default=1)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--guarantee", default="at_least_once", choices=["at_least_once", "exactly_once", "both"]
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--partitioner",
        default="murmur2",
        choices=sorted(PARTITIONERS),
        help="how the corpus is placed on partitions: murmur2 as the Java client does, "
        "crc32 as librdkafka clients do by default",
    )
    ap.add_argument(
        "--input-partitioner",
        default="murmur2",
        choices=sorted(PARTITIONERS),
        help="the workers' [kafka] input_partitioner: what they place accounts by; records "
        "the corpus placed otherwise are forwarded",
    )
    ap.add_argument(
        "--trace",
        type=Path,
        help="a folder: each worker run's progress readings go there as CSV "
        "(seconds, consumed, processed, input partitions paused, read once a second)",
    )
    ap.add_argument(
        "--compare",
        action="append",
        metavar="KEY=VALUE",
        help="a [worker] setting (TOML value) for a second worker beside the default one, "
        "under each guarantee run; repeat it to set several on that worker",
    )
    ap.add_argument(
        "--compare-tree",
        type=Path,
        metavar="DIR",
        help="another checkout of Vigil (a git worktree of the code before a change, its C "
        "extensions built): its worker runs beside this one under each guarantee run",
    )
    args = ap.parse_args()
    if (
        args.compare_tree is not None
        and not (args.compare_tree / "streams" / "__main__.py").is_file()
    ):
        ap.error(f"--compare-tree {args.compare_tree}: no Vigil checkout there (streams/ missing)")
    for setting in args.compare or ():
        key, eq, value = setting.partition("=")
        if not eq or not key.strip() or not value.strip():
            ap.error(f"--compare {setting!r}: expected KEY=VALUE, e.g. fetch_max_wait_ms=100")
    args.compare = [s.replace("=", " = ", 1) for s in args.compare or ()]
    if args.compare:  # checked as a worker would check them, before the broker starts
        from streams.core.config_load import ConfigError, load_config

        with tempfile.TemporaryDirectory() as d:
            probe = write_config(Path(d) / "probe.toml", "localhost:9092", "probe",
                                 "at_least_once", worker=tuple(args.compare))  # fmt: skip
            try:
                load_config(probe)
            except ConfigError as exc:
                ap.error(f"--compare: {exc}")
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="vigil-bench-kafka-"))
    bootstrap, broker = start_broker(scratch)
    try:
        vigil = str(Path(sys.executable).parent / "vigil")
        gen = scratch / "gen"
        subprocess.run([vigil, "generate", "--accounts", str(args.accounts), "--hours",
                        str(args.hours), "--seed", str(args.seed), "--out", str(gen)],
                       check=True, capture_output=True)  # fmt: skip
        lines = list(read_lines(gen / "events.jsonl.gz"))
        n = len(lines)
        tag = f"b{int(time.time())}"

        first = "at_least_once" if args.guarantee == "both" else args.guarantee
        told = args.input_partitioner
        cfg = write_config(scratch / "a.toml", bootstrap, tag + "a", first, input_partitioner=told)
        create_topics(cfg)
        place = PARTITIONERS[args.partitioner]
        asyncio.run(fill(bootstrap, f"{tag}a-usage", lines, partitioner=place))
        # Rounds of a bare drain and each worker variant, each worker in a fresh group: the
        # machine's speed drifts, so they are compared round by round.
        # A run lasts less than the default 30 s snapshot interval, so the default worker
        # sends its snapshots only when it stops; the second variant sends them at every
        # checkpoint (5 s), which bounds what they cost while working off a backlog.
        variants: dict[str, tuple[tuple, str, tuple[str, ...], Path]] = {
            "vigil worker, end to end": ((), first, (), REPO),
            "  snapshots at every checkpoint": (("--snapshot-interval", "5"), first, (), REPO),
            "  --no-snapshots": (("--no-snapshots",), first, (), REPO),
        }
        if args.guarantee == "both":
            variants = {
                "worker, at_least_once": ((), "at_least_once", (), REPO),
                "worker, exactly_once": ((), "exactly_once", (), REPO),
            }
        if args.compare or args.compare_tree:
            # Each guarantee's default worker beside one with the settings compared, or
            # the other checkout's worker.
            guarantees = dict.fromkeys(v[1] for v in variants.values())
            variants = {}
            for g in guarantees:
                variants[f"worker, {g}"] = ((), g, (), REPO)
                if args.compare:
                    name = f"  {', '.join(args.compare)} ({g})"
                    variants[name] = ((), g, tuple(args.compare), REPO)
                if args.compare_tree:
                    variants[f"  {args.compare_tree} ({g})"] = ((), g, (), args.compare_tree)
        bare: list[float] = []
        rates: dict[str, list[float]] = {k: [] for k in variants}
        taken: dict[str, list[float]] = {k: [] for k in variants}
        peak: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds):
            bare.append(asyncio.run(bare_drain(bootstrap, f"{tag}a-usage", n)))
            # Each round starts with a different variant, so none always follows the drain.
            for k in range(len(names)):
                i = (r + k) % len(names)
                name, (extra, guarantee, settings, tree) = names[i], variants[names[i]]
                group = f"r{r}v{i}"
                cfg_v = write_config(
                    scratch / f"{group}.toml",
                    bootstrap,
                    tag + "a",
                    guarantee,
                    group,
                    input_partitioner=told,
                    worker=settings,
                )
                trace = args.trace / f"{group}-{guarantee}.csv" if args.trace else None
                rate, taken_in, rss, cpu_us = worker_rate(
                    cfg_v, scratch / f"worker-{group}", n, extra, trace, tree
                )
                cpu[name].append(cpu_us)
                rates[name].append(rate)
                taken[name].append(taken_in)
                peak[name].append(rss)
        bare_med = statistics.median(bare)
        vig = statistics.median(rates[names[0]])

        cfg_b = write_config(
            scratch / "b.toml", bootstrap, tag + "b", first, input_partitioner=told
        )
        create_topics(cfg_b)
        proc, port = start_worker(cfg_b, scratch / "worker-b")
        try:
            rate = vig / 2
            sent = asyncio.run(fill(bootstrap, f"{tag}b-usage", lines, rate, place))
            wait_settled(port, n)
            alerts = read_alerts(bootstrap, f"{tag}b-alerts")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        lat = sorted(latencies(alerts, sent, place))

        print(f"corpus: {n} events, {args.accounts} accounts, {args.hours} h, "
              f"{PARTITIONS} partitions, guarantee {args.guarantee}, partitioner {args.partitioner}, "
              f"workers' input_partitioner {told}")  # fmt: skip

        def runs(xs: list[float]) -> str:
            return "runs " + ", ".join(f"{x:,.0f}" for x in xs)

        print(f"medians of {args.rounds} rounds; ratio to the bare drain of the same round; "
              f"worker: until {PROCESSED_SHARE:.0%} of the events are scored")  # fmt: skip
        print(f"{'bare aiokafka drain':34s} {bare_med:10,.0f} events/s  {runs(bare)}")
        for name, xs in rates.items():
            ratios = [x / b for x, b in zip(xs, bare, strict=True)]
            print(
                f"{name:34s} {statistics.median(xs):10,.0f} events/s  {runs(xs)}  "
                f"ratio {statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})"
            )
            print(f"{'':34s} taking records in: {statistics.median(taken[name]):10,.0f} events/s  "
                  f"{runs(taken[name])}")  # fmt: skip
            print(f"{'':34s} peak RSS: {max(peak[name]):,.0f} MiB")  # fmt: skip
            print(f"{'':34s} CPU per event scored: {statistics.median(cpu[name]):.2f} µs  "
                  f"(runs {', '.join(f'{x:.2f}' for x in cpu[name])})")  # fmt: skip
        print("target: ratio >= 0.50")  # fmt: skip
        if lat:
            p50 = lat[len(lat) // 2]
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"alert latency ({first}) at {rate:,.0f} events/s (50%): p50 {p50 * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms over {len(lat)} alerts of {len(alerts)} read "
                  "(those with a window closed by an event sent)")  # fmt: skip
        else:
            print("alert latency: no alerts raised")
    finally:
        if broker is not None:
            broker.stop(wipe=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
