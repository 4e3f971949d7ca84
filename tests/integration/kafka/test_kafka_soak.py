"""Fault soak on a three-node cluster: two workers, one fault after another, every event counted.

The cluster is the one `make kafka-up BROKERS=3` starts (replication factor 3,
min.insync.replicas 2). Each phase produces a slice of traffic, applies one fault while it
flows, and waits until every record of the slice was handed to an engine. The verifier
counts by input offset, from the audit topic the workers write before each batch reaches the
engine: produced, processed, dead-lettered, processed twice and lost. It prints one row per
fault (the table in docs/kafka.md comes from this output).

Under at_least_once a worker that dies re-processes what it consumed after its last
checkpoint, so duplicates are expected only in the phases that kill or freeze a worker; the
others must have none. Under exactly_once the verifier reads as `read_committed`, and no
phase may process an event twice. No phase may lose an event.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from tests.plugins.kafka import T0, KafkaEnv, WorkerProc, event, watermark_pushers

PARTITIONS = 4
ACCOUNTS = 200
SLICE = 2_000  # events per phase; the burst phase sends ten times as many at once
SECONDS_PER_EVENT = 0.25  # event time: one slice is about 8 minutes
SESSION_TIMEOUT_S = 6  # what KafkaEnv.start_worker passes to the worker


@dataclass
class Row:
    fault: str
    produced: int
    processed: int
    dead_lettered: int
    reasons: dict[str, int]
    duplicated: int
    lost: int
    seconds: float


class Soak:
    def __init__(
        self, env: KafkaEnv, committed_only: bool = False, phase_timeout_s: float = 150
    ) -> None:
        self.env = env
        self.committed_only = committed_only
        self.phase_timeout_s = phase_timeout_s
        self.next_id = 0
        self.seen: Counter[tuple[int, int]] = Counter()
        self.offsets: set[tuple[int, int]] = set()
        self.dead: Counter[str] = Counter()
        self.rows: list[Row] = []

    def traffic(self, n: int) -> list[bytes]:
        start, self.next_id = self.next_id, self.next_id + n
        return [
            event(f"acct_{i % ACCOUNTS:04d}", T0 + i * SECONDS_PER_EVENT, f"ev-{i}")
            for i in range(start, start + n)
        ]

    def _refresh(self) -> None:
        self.seen.clear()
        for rec in self.env.read("audit", idle_s=1.5, committed_only=self.committed_only):
            body = orjson.loads(rec.value)
            if body["topic"] == self.env.topic("input"):
                for off in body["offsets"]:
                    self.seen[(body["partition"], off)] += 1
        self.offsets = {(r.partition, r.offset) for r in self.env.read("input", idle_s=1.5)}

    def phase(self, fault: str, produce: Callable[[], int]) -> Row:
        t0 = time.monotonic()
        timeout_s = self.phase_timeout_s
        before = set(self.offsets)
        dup_before = sum(c - 1 for c in self.seen.values())
        dead_before = Counter(self.dead)
        produced = produce()
        deadline = time.monotonic() + timeout_s
        while True:
            self._refresh()
            new = self.offsets - before
            missing = [o for o in new if o not in self.seen]
            if len(new) >= produced and not missing:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        self.dead = Counter(
            dict(r.headers or []).get("vigil-reason", b"?").decode()
            for r in self.env.read("dead", idle_s=1.5, committed_only=self.committed_only)
        )
        dead = self.dead - dead_before
        row = Row(
            fault,
            produced,
            sum(1 for o in new if o in self.seen),
            sum(dead.values()),
            dict(dead),
            sum(c - 1 for c in self.seen.values()) - dup_before,
            produced - sum(1 for o in new if o in self.seen),
            time.monotonic() - t0,
        )
        self.rows.append(row)
        return row

    def table(self) -> str:
        head = "| fault | produced | processed | dead-lettered | processed twice | lost | seconds |"
        lines = [head, "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(
                f"| {r.fault} | {r.produced} | {r.processed} | "
                f"{r.dead_lettered}{_why(r.reasons)} | "
                f"{r.duplicated} | {r.lost} | {r.seconds:.0f} |"
            )
        return "\n".join(lines)


def _why(reasons: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")" if reasons else ""


def _produce(env: KafkaEnv, lines: list[bytes], key_by_account: bool = True) -> int:
    for i in range(0, len(lines), 500):
        env.produce(lines[i : i + 500], key_by_account=key_by_account)
    return len(lines)


def _flowing(env: KafkaEnv, lines: list[bytes], during: Callable[[], None]) -> int:
    """Produces the first half, applies the fault, then produces the rest."""
    half = len(lines) // 2
    _produce(env, lines[:half])
    during()
    _produce(env, lines[half:])
    return len(lines)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_fault_soak_three_brokers(kafka_cluster3, tmp_path, topic_prefix, guarantee, capsys):
    env = KafkaEnv(kafka_cluster3.bootstrap, topic_prefix, tmp_path)
    env.write_config(partitions=PARTITIONS, guarantee=guarantee)
    with env.config_path.open("a") as f:
        f.write("replication_factor = 3\n")
    env.create_topics(audit=True)
    exactly_once = guarantee == "exactly_once"
    # Under exactly_once one CI run saw the survivor of a frozen worker take 164 s to make
    # a phase's last events visible (cause not found; docs/kafka.md): the row's seconds
    # show it, and nothing may be lost by the end of the longer wait.
    soak = Soak(env, committed_only=exactly_once, phase_timeout_s=300 if exactly_once else 150)
    workers: dict[str, WorkerProc] = {}

    def start(name: str) -> None:
        workers[name] = env.start_worker(name, audit=True)

    def kill9_b() -> None:
        workers["b"].kill9()
        start("b")

    def sigterm_b() -> None:
        workers["b"].stop()
        start("b")

    def freeze_b() -> None:
        workers["b"].proc.send_signal(signal.SIGSTOP)
        time.sleep(SESSION_TIMEOUT_S + 4)
        workers["b"].proc.send_signal(signal.SIGCONT)

    def wipe_b() -> None:
        workers["b"].stop()
        shutil.rmtree(tmp_path / "data-b")
        start("b")

    def broker_down_and_back() -> int:
        lines = soak.traffic(SLICE)
        third = len(lines) // 3
        _produce(env, lines[:third])
        kafka_cluster3.kill9(kafka_cluster3.leader(env.topic("input"), 0))
        _produce(env, lines[third : 2 * third])  # acks=all still met by the two others
        kafka_cluster3.start()  # restarts the node it killed, and only that one
        _produce(env, lines[2 * third :])
        return len(lines)

    try:
        start("a")
        start("b")
        soak.phase("none (baseline)", lambda: _produce(env, soak.traffic(SLICE)))
        soak.phase(
            "kill -9 of a worker, three times in a row",
            lambda: _flowing(env, soak.traffic(SLICE), lambda: [kill9_b() for _ in range(3)]),
        )
        soak.phase("SIGTERM of a worker", lambda: _flowing(env, soak.traffic(SLICE), sigterm_b))
        soak.phase(
            "kill -9 of the partition leader's broker, and its restart", broker_down_and_back
        )
        soak.phase(
            f"worker paused (SIGSTOP) {SESSION_TIMEOUT_S + 4} s, past its session timeout",
            lambda: _flowing(env, soak.traffic(SLICE), freeze_b),
        )
        soak.phase(
            "one worker's local state wiped before its restart",
            lambda: _flowing(env, soak.traffic(SLICE), wipe_b),
        )
        soak.phase("10x producer burst", lambda: _produce(env, soak.traffic(10 * SLICE)))
        poison = [b'{"event_id": "broken", "ts": ', b"[1, 2]", b"\xff\xfe", b""] * 25
        soak.phase(
            "poison records mixed in",
            lambda: _produce(env, soak.traffic(SLICE)[:1000] + poison + soak.traffic(1000)),
        )
        env.produce(watermark_pushers(PARTITIONS, T0 + soak.next_id + 3600, tag="end"))
        with capsys.disabled():
            print(
                f"\nfault soak, {guarantee}, 3 brokers, 2 workers, {PARTITIONS} partitions\n"
                f"{soak.table()}"
            )

        by_fault = {r.fault: r for r in soak.rows}
        for r in soak.rows:
            assert r.lost == 0, f"{r.fault}: {r.lost} events never processed\n{soak.table()}"
        # Faults that leave both workers running re-process nothing.
        for name in ("none (baseline)", "10x producer burst", "poison records mixed in"):
            assert by_fault[name].duplicated == 0, soak.table()
        if exactly_once:  # and, read committed, no fault re-processes anything
            for r in soak.rows:
                assert r.duplicated == 0, f"{r.fault}: processed twice\n{soak.table()}"
        # Only the poison is dead-lettered: no fault makes an event late or unreadable.
        for r in soak.rows:
            want = len(poison) if r.fault == "poison records mixed in" else 0
            assert r.dead_lettered == want, soak.table()
        assert all(w.alive() for w in workers.values()), workers["a"].log()[-3000:]
        for w in workers.values():
            code, body = w.get("/health")
            assert code == 200, body
    finally:
        env.close()
