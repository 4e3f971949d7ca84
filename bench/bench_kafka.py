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
     that closes a window to the alert for that window appearing on the alert topic,
     every alert read (read_committed) once the worker has settled (wait_settled).

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
from datetime import datetime
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.kafka_worker import (  # noqa: E402
    PARTITIONS,
    PROCESSED_SHARE,
    latencies,
    read_alerts,
    start_worker,
    wait_settled,
    worker_rate,
)
from streams.kafka.produce import read_lines  # noqa: E402
from streams.kafka.routing import account_of, partition_for  # noqa: E402
from tests.plugins.kafka_broker import KafkaBroker, start_private_broker  # noqa: E402


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
