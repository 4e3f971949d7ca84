"""Pytest fixtures for a real Apache Kafka broker.

When VIGIL_KAFKA_BOOTSTRAP is set, tests use that cluster. Otherwise the session starts a
private single-node broker with deploy/kafka/kafka-up.sh on a free loopback port, with its
data in the session's temporary directory, and stops it at the end. A missing java or mvn
fails the test with the install command; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.processes import die_with_parent

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "deploy" / "kafka"


INSTALL_HINT = {
    "java": "install a JDK 17+: `sudo apt-get install -y openjdk-17-jre-headless` "
    "(macOS: `brew install openjdk@17`)",
    "mvn": "install Maven: `sudo apt-get install -y maven` (macOS: `brew install maven`); "
    "it fetches the broker jars once into deploy/kafka/lib/",
}


@dataclass
class KafkaBroker:
    bootstrap: str
    port: int
    data_dir: Path | None  # None: an external cluster this session does not control

    @property
    def managed(self) -> bool:
        return self.data_dir is not None

    def _env(self) -> dict[str, str]:
        assert self.data_dir is not None
        return {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        _run_script("kafka-up.sh", self._env())

    def stop(self, wipe: bool = False) -> None:
        _run_script("kafka-down.sh", self._env(), "--wipe" if wipe else "")

    def restart(self) -> None:
        if not self.managed:
            raise RuntimeError("cannot restart an external cluster")
        self.stop()
        self.start()


def require_tools() -> None:
    missing = ["java"] if shutil.which("java") is None else []
    have_jars = any((KAFKA_DIR / "lib").glob("kafka_2.13-*.jar"))
    if not have_jars and shutil.which("mvn") is None:
        missing.append("mvn")
    if missing:
        pytest.fail(
            "the Kafka tests start a real broker and need "
            + "; ".join(f"{t}: {INSTALL_HINT[t]}" for t in missing)
            + ". Or point them at a running cluster with VIGIL_KAFKA_BOOTSTRAP=host:port.",
            pytrace=False,
        )


def _run_script(name: str, env: dict[str, str], *args: str) -> None:
    cmd = [str(KAFKA_DIR / name), *[a for a in args if a]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"{name} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(n: int) -> int:
    """The first of n consecutive free loopback ports, below the ephemeral range.

    A broker that a test kills and restarts must get its ports back. Inside the ephemeral
    range, the other nodes' reconnect attempts to a dead node's port can be handed that
    very port as their source and connect to themselves, which holds it. A restarted node
    once failed with "Address already in use" in the fault soak, most likely so."""
    import random

    top = min(_ephemeral_low(), 65536) - n
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(max(1024, top - 12000), top)
        try:
            for p in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {n} consecutive free loopback ports below the ephemeral range")


def start_private_broker(base: Path) -> KafkaBroker:
    require_tools()
    port = free_port_run(2)  # the broker's port and its controller's
    broker = KafkaBroker(f"127.0.0.1:{port}", port, base / f"kafka-{port}")
    broker.start()
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    external = os.environ.get("VIGIL_KAFKA_BOOTSTRAP")
    if external:
        yield KafkaBroker(external, 0, None)
        return
    broker = start_private_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def restartable_kafka(
    kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    """A broker the test may stop and start: the session's own, or a private one."""
    if kafka_broker.managed:
        yield kafka_broker
        return
    broker = start_private_broker(tmp_path_factory.mktemp("kafka-restart"))
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests never share topics or consumer groups."""
    return f"t{uuid.uuid4().hex[:10]}"


# -- running workers and reading topics --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    port: int
    log_path: Path

    def get(self, path: str) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> dict[str, float]:
        """Sample name (with labels) -> value, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def metric_sum(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@dataclass
class KafkaEnv:
    """One test's topics, consumer group, config file and worker processes."""

    bootstrap: str
    prefix: str
    root: Path
    partitions: int = 4
    workers: list[WorkerProc] | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "vigil.toml"

    def write_config(
        self, partitions: int = 4, extra: str = "", guarantee: str = "at_least_once"
    ) -> Path:
        self.partitions = partitions
        p = self.prefix
        self.config_path.write_text(
            f"""{extra}
[kafka]
bootstrap_servers = "{self.bootstrap}"
input_topic = "{p}-usage"
alerts_topic = "{p}-alerts"
dead_letter_topic = "{p}-dead"
snapshots_topic = "{p}-snapshots"
snoozes_topic = "{p}-snoozes"
control_topic = "{p}-control"
shadow_alerts_topic = "{p}-shadow"
group_id = "{p}-vigil"
partitions = {partitions}
processing_guarantee = "{guarantee}"
"""
        )
        return self.config_path

    @property
    def config(self):
        from streams.core.config import load_config

        return load_config(self.config_path)

    def topic(self, kind: str) -> str:
        from streams.kafka.settings import WorkerSettings

        k = self.config.kafka
        return {
            "input": k.input_topic,
            "alerts": k.alerts_topic,
            "dead": k.dead_letter_topic,
            "snapshots": k.snapshots_topic,
            "snoozes": k.snoozes_topic,
            "control": k.control_topic,
            "shadow": k.shadow_alerts_topic,
            "audit": f"{self.prefix}-audit",
            "repartition": WorkerSettings().repartition_topic(k),
            "campaign": WorkerSettings().campaign_topic(k),
        }[kind]

    def create_topics(self, audit: bool = False) -> None:
        from streams.kafka.settings import WorkerSettings
        from streams.kafka.topics import ensure_topics, topic_specs

        s = WorkerSettings(audit_topic=self.topic("audit") if audit else "")
        ensure_topics(self.config.kafka, topic_specs(self.config.kafka, s))

    def start_worker(
        self,
        name: str,
        audit: bool = False,
        env: dict[str, str] | None = None,
        ready: bool = True,
        extra_args: list[str] | None = None,
    ) -> WorkerProc:
        import sys
        import time

        port = free_port()
        log_path = self.root / f"worker-{name}.log"
        # A restarted worker's predecessor keeps its log, numbered, for the post-mortem.
        if log_path.exists():
            n = len(list(self.root.glob(f"worker-{name}.*.log"))) + 1
            log_path.rename(self.root / f"worker-{name}.{n}.log")
        cmd = [
            sys.executable,
            "-m",
            "streams",
            "worker",
            "--config",
            str(self.config_path),
            "--data-dir",
            str(self.root / f"data-{name}"),
            "--web-port",
            str(port),
            "--checkpoint-interval",
            "1.0",
            "--session-timeout",
            "6",
            "--loglevel",
            "INFO",
        ]
        if audit:
            cmd += ["--audit-topic", self.topic("audit")]
        cmd += extra_args or []
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        w = WorkerProc(proc, port, log_path)
        if self.workers is None:
            self.workers = []
        self.workers.append(w)
        if ready:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if not w.alive():
                    pytest.fail(f"worker {name} exited:\n{w.log()[-4000:]}", pytrace=False)
                try:
                    code, _ = w.get("/health")
                    if code == 200 and w.metric_sum("vigil_owned_partitions") >= 0:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            else:
                pytest.fail(f"worker {name} not healthy in 90 s:\n{w.log()[-4000:]}", pytrace=False)
        return w

    def produce(self, lines: list[bytes], key_by_account: bool = True, topic: str = "") -> int:
        from streams.kafka.produce import produce

        return produce(iter(lines), self.config.kafka, topic or None, 0, key_by_account)

    def committed(self, kind: str, partition: int) -> int:
        """The workers' group's committed offset for one partition of a topic (-1: none)."""
        from kafka import KafkaAdminClient, TopicPartition

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        group = self.config.kafka.group_id
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        finally:
            admin.close()
        meta = offsets.get(TopicPartition(self.topic(kind), partition))
        return meta.offset if meta is not None else -1

    def read(
        self,
        kind: str,
        until: int = 0,
        idle_s: float = 5.0,
        timeout_s: float = 120.0,
        committed_only: bool = False,
    ):
        """Records of a topic from the start: stops once `until` are read (0: once every
        partition is read up to its end as of the call, and then idle for `idle_s`).
        `committed_only` reads as `read_committed`: records of aborted transactions (and of
        open ones) are not returned, and the end is the last stable offset."""
        import time

        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            isolation_level="read_committed" if committed_only else "read_uncommitted",
        )
        out = []
        try:
            topic = self.topic(kind)
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
            c.assign(tps)
            # Idle time alone is no end: on a loaded machine a fetch can pause longer than
            # idle_s, and the read would return part of the topic.
            ends = c.end_offsets(tps) if tps else {}
            start = last = time.monotonic()
            while True:
                got = c.poll(timeout_ms=300)
                for recs in got.values():
                    out.extend(recs)
                    last = time.monotonic()
                now = time.monotonic()
                if until and len(out) >= until:
                    break
                if now - start > timeout_s:
                    break
                if (
                    not until
                    and now - last > idle_s
                    and all(c.position(tp) >= end for tp, end in ends.items())
                ):
                    break
        finally:
            c.close()
        return out

    def close(self) -> None:
        for w in self.workers or []:
            w.stop()


@pytest.fixture
def kafka_env(kafka_bootstrap: str, tmp_path: Path, topic_prefix: str) -> Iterator[KafkaEnv]:
    env = KafkaEnv(kafka_bootstrap, topic_prefix, tmp_path)
    env.write_config()
    try:
        yield env
    finally:
        env.close()


# -- events ------------------------------------------------------------------------------

T0 = 1_790_812_800.0  # 2026-10-01T00:00:00Z, a window boundary


def event(account: str, ts: float, event_id: str, **fields) -> bytes:
    import orjson

    body = {
        "event_id": event_id,
        "ts": ts,
        "account_id": account,
        "endpoint": "chat.completions",
        "api_key_id": f"key_{account}",
        "model": "gpt-small",
        "prompt_tokens": 200,
        "completion_tokens": 50,
        "status": 200,
        "latency_ms": 400.0,
        "ip": "10.1.2.3",
        "country": "US",
        "user_agent": "openai-python/1.40.0",
        "plan": "payg",
        **fields,
    }
    return orjson.dumps(body)


def account_in_partition(partition: int, partitions: int, stem: str = "acct_push") -> str:
    """An account id that the default (murmur2) partitioner places in `partition`."""
    from streams.kafka.routing import partition_for

    for i in range(100_000):
        name = f"{stem}_{partition}_{i}"
        if partition_for(name.encode(), partitions) == partition:
            return name
    raise AssertionError("no account found")


def watermark_pushers(partitions: int, ts: float, tag: str = "push") -> list[bytes]:
    """One event per partition far enough ahead to close every earlier window there."""
    return [
        event(account_in_partition(p, partitions), ts, f"{tag}-{p}", prompt_tokens=1)
        for p in range(partitions)
    ]
