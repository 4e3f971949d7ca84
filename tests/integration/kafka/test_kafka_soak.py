"""Fault soak on a three-node cluster: two workers, one fault after another, every event
counted, and the alerts compared with replay's on the same events.

The cluster is the one `make kafka-up BROKERS=3` starts (replication factor 3,
min.insync.replicas 2). The traffic is a generated corpus (an hour of 1,000 accounts),
produced by kcat with its default partitioner, so most events reach their engine through
the repartition topic; in the phases with a worker fault, the half before the fault goes
by kcat's murmur2 partitioner instead, keyed, so nothing is forwarded. Each phase sends the corpus's next slice, applies one fault while it
flows, and waits until every event of the slice was handed to an engine.

The verifier counts by event: the workers write an audit record (topic, partition,
offsets) before each batch reaches an engine, and the verifier reads those offsets back to
the raw events, on the input and the repartition topics. Per fault it prints produced,
processed, dead-lettered (with reasons), processed twice and lost (the table in
docs/kafka.md comes from this output). After the last phase the alerted (account,
category) pairs must be replay's, within PARITY.

Under at_least_once a worker that dies re-processes what it consumed after its last
checkpoint, so duplicates are expected only in the phases that kill or freeze a worker.
Under exactly_once the verifier reads as `read_committed`: no phase may process an event
twice, and no alert may be seen twice. No phase may lose an event.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

from tests.integration.kafka.test_kafka_event_time import (
    PARITY,
    PER_ACCOUNT,
    PRODUCERS,
    _produce,
    _push_every_partition,
    make_corpus,
    parity,
)
from tests.integration.kafka.test_kafka_kcat import _kcat
from tests.plugins.kafka import SESSION_TIMEOUT_S, KafkaEnv, WorkerProc, event
from tests.plugins.segments import ONE_BATCH, flip_last_record_byte, records_in
from tests.plugins.segments import batches as batches_in
from tests.plugins.tail import Tail

PARTITIONS = 4
# Slices of the corpus: seven faults take one share each, the burst ten, the poison one.
SHARES = 18
CORRUPT_PARTITION = 3  # not the partition whose leader is killed: that broker's restart
PER_BATCH = 50  # recovers its logs, and would truncate a replica at a corrupted batch
PRODUCER = PRODUCERS["kcat-default"]
POISON = {"malformed_json": 50, "not_an_object": 25, "invalid_utf8": 25}  # dead letters


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return make_corpus(tmp_path_factory.mktemp("soak"), accounts=1000, hours=1)


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
    def __init__(self, env: KafkaEnv, lines: list[bytes], committed_only: bool, timeout_s: float):
        self.env = env
        self.lines = lines
        self.share = len(lines) // SHARES
        self.next = 0
        self.timeout_s = timeout_s
        self.audit = Tail(env.bootstrap, env.topic("audit"), committed_only)
        self.dead_tail = Tail(env.bootstrap, env.topic("dead"), committed_only)
        self.sources = [Tail(env.bootstrap, env.topic(k)) for k in ("input", "repartition")]
        self.input = env.topic("input")
        self.values: dict[tuple[str, int, int], bytes] = {}
        self.unresolved: list[tuple[str, int, int]] = []
        self.seen: Counter[bytes] = Counter()
        self.where: defaultdict[bytes, list] = defaultdict(list)  # value -> audited refs
        self.sent: Counter[bytes] = Counter()  # the corpus has some events twice, on purpose
        # How often each event is in the input topic: kcat's default producer is not
        # idempotent, and a batch it sends again after a lost answer is there twice, at
        # other offsets (seen once in CI: 292 events, the same batch 292 offsets later).
        # Each copy is a record of its own, processed once.
        self.copies: Counter[bytes] = Counter()
        self.dead: Counter[str] = Counter()
        self.dead_values: list[tuple[str, bytes]] = []
        self.rows: list[Row] = []

    def slice(self, shares: int = 1, last: bool = False) -> list[bytes]:
        end = len(self.lines) if last else self.next + shares * self.share
        out, self.next = self.lines[self.next : end], end
        return out

    def _refresh(self) -> None:
        # Audit first: every offset it names is then in the sources' reads that follow.
        refs = self.unresolved + [
            ref for r in self.audit.new() for ref in _refs(orjson.loads(r.value), self.input)
        ]
        for tail in self.sources:
            for r in tail.new():
                self.values[(r.topic, r.partition, r.offset)] = r.value
                if tail is self.sources[0]:
                    self.copies[r.value] += 1
        self.unresolved = [ref for ref in refs if ref not in self.values]
        for ref in refs:
            if ref in self.values:
                self.seen[self.values[ref]] += 1
                self.where[self.values[ref]].append(ref)
        for r in self.dead_tail.new():
            reason = dict(r.headers or []).get("vigil-reason", b"?").decode()
            self.dead[reason] += 1
            self.dead_values.append((reason, r.value))

    def phase(
        self,
        fault: str,
        produce: Callable[[], list[bytes]],
        dead: Counter[str] | None = None,
        unread: int = 0,
    ) -> Row:
        """`produce` returns the records that must reach an engine; `dead`, the dead letters
        the phase must add (poison, a corrupted batch), and `unread`, how many records it
        produced besides that no engine can read (a corrupted batch's)."""
        expect_dead = dead or Counter()
        t0 = time.monotonic()
        dup_before = self.duplicated()
        dead_before = Counter(self.dead)
        events = produce()
        self.sent.update(events)
        deadline = time.monotonic() + self.timeout_s
        while True:
            self._refresh()
            missing = sum(1 for v in events if not self.seen[v])
            added = self.dead - dead_before
            if not missing and all(added[k] >= n for k, n in expect_dead.items()):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        added = self.dead - dead_before
        row = Row(
            fault,
            len(events) + unread,
            len(events) - missing,
            sum(added.values()),
            dict(added),
            self.duplicated() - dup_before,
            missing,
            time.monotonic() - t0,
        )
        self.rows.append(row)
        return row

    def twice(self, n: int = 5) -> list:
        """Where some events processed more often than produced were read: for a failure."""
        return [self.where[v] for v, k in self.seen.items() if k > self._copies(v)][:n]

    def duplicated(self) -> int:
        """Events handed to an engine more often than they are records of the input topic
        (at least as often as they were produced)."""
        return sum(max(0, n - self._copies(v)) for v, n in self.seen.items())

    def _copies(self, value: bytes) -> int:
        return max(self.sent[value], self.copies[value])

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

    def close(self) -> None:
        for tail in (self.audit, self.dead_tail, *self.sources):
            tail.close()


def _refs(body: dict, input_topic: str) -> list[tuple[str, int, int]]:
    """Where each event of an audited batch was produced: a forwarded event (one bundle's
    events share its repartition offset) by the input partition and offset its source
    read it at."""
    here = [(body["topic"], body["partition"], off) for off in body["offsets"]]
    if "origins" not in body:
        return here
    return [
        (input_topic, source, at) if source >= 0 else ref
        for ref, (source, at) in zip(here, body["origins"], strict=True)
    ]


def _why(reasons: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")" if reasons else ""


def _send(env: KafkaEnv, lines: list[bytes], producer: list[str] = PRODUCER) -> list[bytes]:
    for i in range(0, len(lines), 2_000):
        _produce(env, lines[i : i + 2_000], producer)
    return lines


def _flowing(env: KafkaEnv, lines: list[bytes], during: Callable[[], None]) -> list[bytes]:
    """Produces the first half, applies the fault, then produces the rest. The first half
    goes by kcat's murmur2 partitioner, so that nothing is forwarded: under exactly_once
    the workers then publish the campaign exchange between checkpoints (exchange commits,
    docs/kafka.md) when the fault strikes."""
    half = len(lines) // 2
    _send(env, lines[:half], PRODUCERS["kcat-murmur2"])
    during()
    _send(env, lines[half:])
    return lines


# -- a record batch corrupted on every replica's disk -----------------------------------
def _corrupt_on_disk(cluster, env: KafkaEnv, ts: float) -> list[bytes]:
    """Three kcat batches onto one partition; once every replica holds them, one byte of the
    middle batch flipped in each replica's segment file. Returns the events that must
    still be processed (the first and the last batch)."""
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(env.topic("input"), CORRUPT_PARTITION)
    c = KafkaConsumer(bootstrap_servers=env.bootstrap)
    try:
        start = c.end_offsets([tp])[tp]
    finally:
        c.close()
    sent = [
        [event(f"acct_disk_{i % 5}", ts + i, f"disk-{b}-{i}", prompt_tokens=10)
         for i in range(PER_BATCH)]
        for b in range(3)
    ]  # fmt: skip
    for lines in sent:  # one kcat run, one batch
        subprocess.run(
            [_kcat(), "-b", env.bootstrap, "-t", tp.topic, "-P", "-p", str(tp.partition)]
            + ONE_BATCH,
            input=b"\n".join(lines) + b"\n",
            check=True,
            timeout=60,
        )
    segments = sorted(cluster.data_dir.rglob(f"{tp.topic}-{tp.partition}/*.log"))
    assert len(segments) == 3, segments  # one per replica
    middle = start + PER_BATCH
    deadline = time.monotonic() + 60
    for seg in segments:
        while not any(b[0] == middle + PER_BATCH for b in batches_in(seg.read_bytes())):
            assert time.monotonic() < deadline, f"{seg}: the batches never replicated"
            time.sleep(0.2)
        raw = seg.read_bytes()
        assert records_in(raw, middle) == PER_BATCH, f"{seg}: the middle run is not one batch"
        flip_last_record_byte(seg, next(b for b in batches_in(raw) if b[0] == middle))
    return sent[0] + sent[2]


# -- alerts ------------------------------------------------------------------------------
def _settled_alerts(env: KafkaEnv, committed_only: bool) -> list[dict]:
    """The alerts once the topic stops growing (the last windows close once the end marks
    reach every engine, with their partitions' next checkpoints under exactly_once)."""
    tail = Tail(env.bootstrap, env.topic("alerts"), committed_only)
    alerts: list[dict] = []
    try:
        deadline, quiet = time.monotonic() + 120, 0
        while time.monotonic() < deadline and quiet < 3:
            time.sleep(3)
            got = [orjson.loads(r.value) for r in tail.new()]
            quiet = quiet + 1 if not got and alerts else 0
            alerts += got
    finally:
        tail.close()
    return alerts


def _ours(alerts: list[dict]) -> list[dict]:
    """Alerts on the corpus's accounts: not the disk phase's or the closing marks'."""
    return [a for a in alerts if not a["account_id"].startswith(("acct_disk_", "acct_end_"))]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_fault_soak_three_brokers(
    kafka_cluster3, corpus, tmp_path, topic_prefix, guarantee, figures
):
    env = KafkaEnv(kafka_cluster3.bootstrap, topic_prefix, tmp_path)
    env.write_config(partitions=PARTITIONS, guarantee=guarantee)
    with env.config_path.open("a") as f:
        f.write("replication_factor = 3\n")
    env.create_topics(audit=True)
    exactly_once = guarantee == "exactly_once"
    # Under exactly_once one CI run saw the survivor of a frozen worker take 164 s to make
    # a phase's last events visible (docs/kafka.md): the row's seconds show it, and
    # nothing may be lost by the end of the longer wait.
    soak = Soak(env, corpus["lines"], exactly_once, timeout_s=300 if exactly_once else 150)
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

    def broker_down_and_back() -> list[bytes]:
        lines = soak.slice()
        third = len(lines) // 3
        _send(env, lines[:third])
        kafka_cluster3.kill9(kafka_cluster3.leader(env.topic("input"), 0))
        _send(env, lines[third : 2 * third])  # acks=all still met by the two others
        kafka_cluster3.start()  # restarts the node it killed, and only that one
        _send(env, lines[2 * third :])
        return lines

    def disk_while_stopped() -> list[bytes]:
        for name in ("a", "b"):
            workers[name].stop()
        kept = _corrupt_on_disk(kafka_cluster3, env, corpus["last"] + 1)
        start("a")
        start("b")
        return kept

    poison = [
        line % i
        for i in range(25)
        for line in (
            b'{"event_id": "broken-%d", "ts": ',
            b'{"account_id": %d',
            b"[%d]",
            b"\xff\xfe%d",
        )
    ]  # each line once, so each can be counted
    try:
        start("a")
        start("b")
        soak.phase("none (baseline)", lambda: _send(env, soak.slice()))
        soak.phase(
            "kill -9 of a worker, three times in a row",
            lambda: _flowing(env, soak.slice(), lambda: [kill9_b() for _ in range(3)]),
        )
        soak.phase("SIGTERM of a worker", lambda: _flowing(env, soak.slice(), sigterm_b))
        soak.phase(
            "kill -9 of the partition leader's broker, and its restart", broker_down_and_back
        )
        soak.phase(
            f"worker paused (SIGSTOP) {SESSION_TIMEOUT_S + 4} s, past its session timeout",
            lambda: _flowing(env, soak.slice(), freeze_b),
        )
        soak.phase(
            "one worker's local state wiped before its restart",
            lambda: _flowing(env, soak.slice(), wipe_b),
        )
        soak.phase("10x producer burst", lambda: _send(env, soak.slice(10)))

        def with_poison() -> list[bytes]:
            lines = soak.slice(last=True)
            half = len(lines) // 2
            _send(env, lines[:half])
            env.produce(poison)
            _send(env, lines[half:])
            return lines + poison  # handed to an engine too, which dead-letters them

        soak.phase(
            "poison records mixed in",
            with_poison,
            Counter(POISON),
        )
        soak.phase(
            "a batch corrupted on every replica's disk, read by restarted workers",
            disk_while_stopped,
            Counter({"corrupt_batch": PER_BATCH}),
            unread=PER_BATCH,
        )
        _push_every_partition(env, corpus["last"] + 3 * 3600)
        alerts = _settled_alerts(env, exactly_once)
        ids = Counter(a["alert_id"] for a in alerts)
        dup_alerts = sum(c - 1 for c in ids.values())
        precision, recall = parity(corpus["alerts"], _ours(alerts))
        r = {a["account_id"] for a in corpus["alerts"] if a["category"] in PER_ACCOUNT}
        w = {a["account_id"] for a in _ours(alerts) if a["category"] in PER_ACCOUNT}
        late = {v for reason, v in soak.dead_values if reason == "too_late"}
        replay_late = {
            d["raw"].encode() if isinstance(d["raw"], str) else d["raw"] for d in corpus["too_late"]
        }
        figures(
            f"fault soak, {guarantee}, 3 brokers, 2 workers, {PARTITIONS} partitions, "
            f"{len(corpus['lines'])} events by kcat's default partitioner (murmur2 before "
            f"each worker fault)\n{soak.table()}\n"
            f"alerts {len(alerts)}, seen twice {dup_alerts}; per-account alerted accounts "
            f"replay {len(r)}, worker {len(w)}, both {len(r & w)}; (account, category) "
            f"precision {precision:.3f}, macro recall {recall:.3f}; too_late worker "
            f"{len(late)}, replay {len(replay_late)}"
        )
        table = soak.table()
        for row in soak.rows:
            assert row.lost == 0, f"{row.fault}: {row.lost} events never processed\n{table}"
        by_fault = {row.fault: row for row in soak.rows}
        # Faults that leave both workers running re-process nothing.
        for name in ("none (baseline)", "10x producer burst", "poison records mixed in"):
            assert by_fault[name].duplicated == 0, table
        if exactly_once:  # and, read committed, no fault re-processes or re-alerts anything
            for row in soak.rows:
                assert row.duplicated == 0, f"{row.fault}: processed twice\n{table}\n{soak.twice()}"
            assert dup_alerts == 0, ids.most_common(3)
        # Dead letters: what replay dead-letters in the corpus, the poison and the corrupted
        # batch, and as too_late only what replay finds too late in the same file. A fault
        # may repeat a dead letter only where it repeats events (at_least_once).
        wanted = corpus["dead_reasons"] + Counter(POISON) + Counter(corrupt_batch=PER_BATCH)
        del wanted["too_late"]
        got = Counter({k: v for k, v in soak.dead.items() if k != "too_late"})
        assert set(got) == set(wanted) and not wanted - got, (got, wanted)
        extra = sum((got - wanted).values())
        assert extra <= (0 if exactly_once else soak.duplicated()), (got, wanted)
        # Under both guarantees since stop 29: the burst phase once sent 326 and 411 events
        # to too_late under exactly_once, in one run of three. Both causes are fixed (a
        # stalled commit hiding marks; silent sources coming back one worker's commit
        # apart), and seven runs in a row since dropped exactly replay's.
        assert late <= replay_late, "dropped as too_late an event that replay kept"
        assert alerts, "the corpus must raise alerts"
        assert r <= w, sorted(r - w)
        assert precision >= 1 - PARITY and recall >= 1 - PARITY, (precision, recall)
        assert all(wp.alive() for wp in workers.values()), workers["a"].log()[-3000:]
        for wp in workers.values():
            code, body = wp.get("/health")
            assert code == 200, body
        # Every partition's last checkpoint can be restored from the changelog alone. A
        # frozen worker once deleted segments its successor's manifest still named, and
        # only a later restore of that partition found out (stop 40's CI run).
        for wp in workers.values():
            wp.stop()
        assert env.unreadable_checkpoints(committed_only=exactly_once) == {}
    finally:
        soak.close()
        env.close()
