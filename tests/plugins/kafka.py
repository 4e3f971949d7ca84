"""Pytest fixtures over a real Apache Kafka broker (tests/plugins/kafka_broker.py): a
topic prefix per test, workers run as processes, and the topics written and read.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.kafka_broker import REPO, free_port
from tests.plugins.processes import die_with_parent

SESSION_TIMEOUT_S = 6  # what start_worker passes to every worker


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests never share topics or consumer groups."""
    return f"t{uuid.uuid4().hex[:10]}"


# -- running workers and reading topics --------------------------------------------------


def wait_until(cond: Callable[[], object], what: str, timeout_s: float = 90) -> None:
    """Polls `cond` until it holds; fails with `what` after `timeout_s`."""
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


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
        self,
        partitions: int = 4,
        extra: str = "",
        guarantee: str = "at_least_once",
        partitioner: str = "murmur2",
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
input_partitioner = "{partitioner}"
processing_guarantee = "{guarantee}"
"""
        )
        return self.config_path

    @property
    def config(self):
        from streams.core.config_load import load_config

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
            "changelog": f"{k.group_id}-{WorkerSettings().state_table}-changelog",
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
            str(SESSION_TIMEOUT_S),
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

    def unreadable_checkpoints(self, committed_only: bool = False) -> dict[int, str]:
        """Each partition whose last checkpoint in the state changelog cannot be read whole
        (a manifest naming a chunk the changelog no longer holds), with why: what a worker
        restoring it from the changelog would stop on."""
        from streams.kafka import checkpoint

        tables: dict[int, dict[bytes, bytes]] = {}
        for r in self.read("changelog", committed_only=committed_only):
            table = tables.setdefault(r.partition, {})
            if r.value is None:  # a deleted chunk
                table.pop(r.key, None)
            else:
                table[r.key] = r.value
        bad = {}
        for p, table in sorted(tables.items()):
            try:
                got = checkpoint.read(table, self.topic("input"), p)
                if got is not None:
                    checkpoint.read_seen(table, self.topic("input"), p, got[1])
            except Exception as exc:  # noqa: BLE001 - each partition's reason is reported
                bad[p] = f"{type(exc).__name__}: {exc}"
        return bad

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
