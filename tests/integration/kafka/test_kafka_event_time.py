"""Event time that survives repartitioning: any producer's partitioning, a catch-up after
downtime, and an idle source, on the real broker with kcat (librdkafka) as the producer.

Each input partition's records arrive in order, but at an engine they come from eight
sources read at different speeds. Windows must close only once every source has passed
them: `too_late` may hold only events that replay, which reads the file in order, also
finds too late, and accounts alerted for their own behaviour must be replay's.
"""

from __future__ import annotations

import gzip
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.kafka.test_kafka_kcat import _kcat
from tests.integration.kafka.test_kafka_parity import _vigil
from tests.plugins.kafka import T0, KafkaEnv, account_in_partition, event

PARTITIONS = 8
# Categories an account earns by its own events; the campaign ones come through the
# campaign exchange between the partitions (streams/kafka/campaign.py).
PER_ACCOUNT = {"key_leak", "distillation", "jailbreak_probing"}
PARITY = 0.05  # precision and macro recall of the worker's (account, category) pairs
PRODUCERS = {
    "kcat-default": ["-K", "\t"],  # librdkafka consistent_random (CRC32 of the key)
    "kcat-murmur2": ["-K", "\t", "-X", "partitioner=murmur2_random"],
    "kcat-unkeyed": [],
}
# The workers' [kafka] input_partitioner: by default murmur2, so kcat's default placement
# is forwarded; told crc32, the workers own accounts where kcat put them.
TOLD = {"kcat-default-told": ("kcat-default", "crc32")}


def _ts(line: bytes) -> float | None:
    try:
        t = orjson.loads(line)["ts"]
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except Exception:
        return None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return make_corpus(tmp_path_factory.mktemp("event-time"), accounts=1000, hours=3)


def make_corpus(
    out, accounts: int = 0, hours: int = 0, seed: int = 5, events: Path | None = None
) -> dict:
    """A generated corpus (or the one in `events`), its events as kcat sends them, and
    replay's results on it."""
    if events is None:
        _vigil(
            "generate", "--accounts", str(accounts), "--hours", str(hours), "--seed", str(seed),
            "--out", str(out),
        )  # fmt: skip
        events = out / "events.jsonl.gz"
    _vigil(
        "replay",
        str(events),
        "--alerts",
        str(out / "replay.jsonl"),
        "--dead-letters",
        str(out / "replay-dead.jsonl"),
    )
    alerts = [orjson.loads(x) for x in (out / "replay.jsonl").read_bytes().splitlines() if x]
    dead = [orjson.loads(x) for x in (out / "replay-dead.jsonl").read_bytes().splitlines() if x]
    # kcat splits on newlines and sends no empty message: what it cannot send is left out
    # of the file that replay reads too.
    lines = [ln for ln in gzip.decompress(events.read_bytes()).split(b"\n") if ln]
    stamps = [t for t in map(_ts, lines) if t is not None]
    assert _per_account(alerts), "the corpus must raise per-account alerts"
    return {
        "lines": lines,
        "alerts": alerts,
        "too_late": [d for d in dead if d["reason"] == "too_late"],
        "dead_reasons": Counter(d["reason"] for d in dead),
        "first": min(stamps),
        "last": max(stamps),
    }


def _per_account(alerts: list[dict]) -> set[str]:
    return {a["account_id"] for a in alerts if a["category"] in PER_ACCOUNT}


def _produce(env: KafkaEnv, lines: list[bytes], flags: list[str], partition: int = -1) -> None:
    if "-K" in flags:
        payload = b"".join(_key(ln) + b"\t" + ln + b"\n" for ln in lines)
    else:
        payload = b"".join(ln + b"\n" for ln in lines)
    where = ["-p", str(partition)] if partition >= 0 else []
    subprocess.run(
        [_kcat(), "-b", env.bootstrap, "-t", env.topic("input"), "-P", *flags, *where],
        input=payload,
        check=True,
        timeout=120,
    )


def _key(line: bytes) -> bytes:
    try:
        acct = orjson.loads(line).get("account_id")
    except Exception:
        acct = None
    return acct.encode() if isinstance(acct, str) and "\t" not in acct else b"nokey"


def _input_records(env: KafkaEnv) -> int:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=env.bootstrap)
    try:
        tps = [TopicPartition(env.topic("input"), p) for p in range(env.partitions)]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def _wait_consumed(worker, count: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.metric_sum("vigil_events_consumed_total") < count:
        assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)


def _push_every_partition(env: KafkaEnv, ts: float) -> None:
    """One event on each input partition, hours past the corpus: every source's mark
    passes every window, as the end of the file does for replay."""
    for p in range(env.partitions):
        _produce(env, [event(f"acct_end_{p}", ts, f"end-{p}", prompt_tokens=1)], [], p)


def _wait_settled(worker, quiet_s: float = 3.0, timeout_s: float = 300.0) -> None:
    """Until no window has been scored for `quiet_s`, none closed waits to be scored, and
    every partition's changes are checkpointed: the alerts are then produced, and under
    exactly_once committed. The count of scored windows alone let three ext-a runs under
    exactly_once read the alerts before the transaction holding the last windows'
    committed (1, 7 and 20 of 52 accounts missing)."""
    deadline = time.monotonic() + timeout_s
    scored = -1.0
    while True:
        assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
        now = worker.metric_sum("vigil_account_windows_scored_total")
        if (
            now == scored
            and worker.metric_sum("vigil_unscored_windows") == 0
            and worker.metric_sum("vigil_uncheckpointed_partitions") == 0
        ):
            return
        scored = now
        time.sleep(quiet_s)


def _results(env: KafkaEnv, committed: bool = False) -> tuple[list[dict], list[bytes]]:
    """The alerts, and the raw events dead-lettered as too late."""
    alerts = [
        orjson.loads(r.value) for r in env.read("alerts", idle_s=2.0, committed_only=committed)
    ]
    late = [
        r.value
        for r in env.read("dead", idle_s=2.0, committed_only=committed)
        if dict(r.headers).get("vigil-reason") == b"too_late"
    ]
    return alerts, late


def _pairs(alerts: list[dict]) -> set[tuple[str, str]]:
    return {
        (a["account_id"], a["category"])
        for a in alerts
        if not a["account_id"].startswith("acct_end_")
    }


def parity(replay: list[dict], worker: list[dict]) -> tuple[float, float]:
    """Precision of the worker's (account, category) pairs against replay's, and recall
    averaged over replay's categories."""
    r, w = _pairs(replay), _pairs(worker)
    precision = len(r & w) / len(w) if w else 1.0
    cats = sorted({c for _, c in r})
    recall = [len({x for x in r & w if x[1] == c}) / len({x for x in r if x[1] == c}) for c in cats]
    return precision, sum(recall) / len(recall) if recall else 1.0


def _compare(
    name: str,
    corpus: dict,
    env: KafkaEnv,
    worker,
    figures,
    committed: bool = False,
    late_allowed: int = 0,
) -> None:
    """`late_allowed`: events the worker may drop as too_late beyond replay's."""
    alerts, late = _results(env, committed)
    forced_name = "vigil_state_budget_windows_closed_early_total"
    assert forced_name in worker.metrics()
    forced = worker.metric_sum(forced_name)
    replay_late = {
        d["raw"].encode() if isinstance(d["raw"], str) else d["raw"] for d in corpus["too_late"]
    }
    r, w = _per_account(corpus["alerts"]), _per_account(alerts)
    ra = {a["account_id"] for a in corpus["alerts"]}
    wa = {a["account_id"] for a in alerts if not a["account_id"].startswith("acct_end_")}
    precision, recall = parity(corpus["alerts"], alerts)
    figures(
        f"{name}, {PARTITIONS} partitions: too_late worker {len(late)}, replay "
        f"{len(replay_late)}; per-account alerted accounts replay {len(r)}, worker "
        f"{len(w)}, both {len(r & w)}; all alerted accounts replay {len(ra)}, worker "
        f"{len(wa)}, both {len(ra & wa)}; (account, category) precision {precision:.3f}, "
        f"macro recall {recall:.3f}; windows forced closed by the budget {forced:.0f}"
    )
    # The budget's safety valve stays for memory, but a plain catch-up must not need it.
    assert forced == 0
    assert len(late) <= len(replay_late) + late_allowed
    assert len(set(late) - replay_late) <= late_allowed, "too_late events replay kept"
    # No owner applied a window before some source's request for it came.
    stale = worker.metric_sum("vigil_campaign_requests_stale_total")
    diff = _differences(corpus["alerts"], alerts, ra, wa, worker) if ra != wa or stale else ""
    if diff:
        figures(f"{name}: {diff}")
    assert stale == 0, diff
    # With the campaign exchange the worker alerts replay's accounts, campaign ones
    # included, under replay's categories up to PARITY. (ext-a runs under exactly_once
    # missed 1 to 20 of 52 accounts now and then while `_wait_settled` read the alerts
    # before the transaction holding the last windows' committed.)
    assert r <= w, sorted(r - w)
    assert wa == ra, diff
    assert precision >= 1 - PARITY and recall >= 1 - PARITY, (precision, recall)


def _differences(replay: list[dict], worker_alerts: list[dict], ra: set, wa: set, worker) -> str:
    """Accounts alerted by one side only (`ra`, `wa`: each side's alerted accounts), with
    the windows and detectors that alerted them, and the worker's figures that a silent
    loss or a skewed exchange would move."""

    def said(side: list[dict], accounts: set[str]) -> list[str]:
        return [
            f"{a['account_id']} {a['window']['end']} {a['category']} {a['score']} "
            + ",".join(f"{d['name']}={d['score']}" for d in a["detectors"] if d["score"])
            for a in side
            if a["account_id"] in accounts
        ]

    names = (
        "vigil_campaign_requests_stale_total",
        "vigil_batches_refetched_total",
        "vigil_events_skipped_on_resume_total",
        "vigil_rebalances_total",
        "vigil_checkpoints_withheld_total",
    )
    counts = {n: worker.metric_sum(n) for n in names}
    warnings = [ln for ln in worker.log().splitlines() if "[WARNING]" in ln or "[ERROR]" in ln]
    noted = [ln for ln in warnings if "NotEnoughReplicas" not in ln][-20:]
    return (
        f"replay only {said(replay, ra - wa)}; worker only {said(worker_alerts, wa - ra)}; "
        f"{counts}; worker warnings {noted}"
    )


@pytest.mark.parametrize("producer", sorted([*PRODUCERS, *TOLD]))
def test_any_partitioner_loses_nothing_to_too_late(kafka_env, corpus, producer, figures):
    env = kafka_env
    client, partitioner = TOLD.get(producer, (producer, "murmur2"))
    env.write_config(partitions=PARTITIONS, partitioner=partitioner)
    env.create_topics()
    worker = env.start_worker(producer)
    _produce(env, corpus["lines"], PRODUCERS[client])
    _push_every_partition(env, corpus["last"] + 3 * 3600)
    _wait_consumed(worker, _input_records(env))
    _wait_settled(worker)
    assert worker.alive()
    _compare(producer, corpus, env, worker, figures)
    forwarded = worker.metric_sum("vigil_events_repartitioned_total")
    figures(f"{producer}: {forwarded:.0f} of {len(corpus['lines'])} events forwarded")
    if producer in ("kcat-murmur2", "kcat-default-told"):
        # Placed as the workers place accounts: only the closing events, one produced to
        # each partition whatever its account, may be forwarded.
        assert forwarded <= PARTITIONS
    else:
        assert forwarded > len(corpus["lines"]) / 2
    # Forwarding kcat's default placement, the worker names the setting that keeps it.
    hint = 'input_partitioner = "crc32"' in worker.log()
    assert hint == (producer == "kcat-default"), worker.log()[-3000:]


def test_exactly_once_commits_slower_than_the_idle_timeout_lose_nothing(kafka_env, corpus, figures):
    """Under exactly_once an engine reads the other sources' forwards and marks only once
    their transaction commits. With commits further apart than `source_idle_s` (here a
    short timeout against the commits of a loaded machine; in production a stalled
    commit), those sources counted as idle although their records were waiting in the
    repartition topic, and the engine closed windows on its own partition's time: the
    forwards, once committed, went to `too_late`. The plugin's `--checkpoint-interval 1`
    overrides any interval in the file."""
    env = kafka_env
    extra = "[worker]\nsource_idle_s = 3\n"
    env.write_config(partitions=PARTITIONS, extra=extra, guarantee="exactly_once")
    env.create_topics()
    worker = env.start_worker("slow-commits")
    _produce(env, corpus["lines"], PRODUCERS["kcat-default"])
    _push_every_partition(env, corpus["last"] + 3 * 3600)
    _wait_consumed(worker, _input_records(env))
    # The campaign exchange moves one step per commit: a window waits for two.
    _wait_settled(worker, quiet_s=25)
    assert worker.alive()
    # Before the fix 11,439 to 65,634 of the 111,056 events went to too_late. Some CI runs
    # since dropped 610, then 9,573, from the first windows: the idle check had read
    # Faust's `highwater`, the last stable offset, so marks behind an open transaction did
    # not hold silence back (fixed 2026-12-05, docs/kafka.md). The bound stays loose until
    # CI runs confirm the fix under load.
    _compare("exactly_once, sources idle after 3 s", corpus, env, worker,
             figures, committed=True, late_allowed=len(corpus["lines"]) // 50)  # fmt: skip


def test_catch_up_after_an_hour_of_downtime(kafka_env, corpus, figures):
    """Hours 0-1 processed, the worker stopped, hours 1-3 produced, the worker restarted:
    every source is drained at its own speed and nothing more is too late. With
    `max_unscored_windows = 1`, `max_source_lead_s = 60` and `max_unscored_bytes` of
    1 MiB (about 2,000 events, so every source but the slowest pauses most of the time)
    the input is paused and resumed over and over (backpressure.py): that loses nothing
    either, and the paused sources count as silent to no engine."""
    env = kafka_env
    extra = (
        "[worker]\nmax_unscored_windows = 1\nmax_source_lead_s = 60\n"
        f"max_unscored_bytes = {2**20}\n"
    )
    env.write_config(partitions=PARTITIONS, extra=extra)
    env.create_topics()
    lines = corpus["lines"]
    cut = corpus["first"] + 3600
    split = next(i for i, ln in enumerate(lines) if (_ts(ln) or 0) >= cut)
    flags = PRODUCERS["kcat-default"]
    _produce(env, lines[:split], flags)
    worker = env.start_worker("first")
    _wait_consumed(worker, _input_records(env))
    time.sleep(3)  # a checkpoint or two
    worker.stop()
    before = _input_records(env)
    _produce(env, lines[split:], flags)
    _push_every_partition(env, corpus["last"] + 3 * 3600)
    worker = env.start_worker("first")
    _wait_consumed(worker, _input_records(env) - before)
    _wait_settled(worker)
    assert worker.alive()
    assert worker.metric_sum("vigil_input_pauses_total") >= 1, "the backlog never paused"
    assert worker.metric_sum("vigil_input_paused_partitions") == 0, "paused at the end"
    assert 0 < worker.metric_sum("vigil_unscored_bytes") < 2**20, "bytes left unscored"
    _compare("catch-up after downtime (kcat default)", corpus, env, worker, figures)


def test_an_idle_source_holds_windows_for_its_timeout_only(kafka_env, figures):
    """Source 1 sends one early event and then nothing: engine 0 keeps its window open for
    `source_idle_s` after that, then closes it on the other source's time."""
    idle_s = 6.0
    env = kafka_env
    env.write_config(partitions=2, extra=f"[worker]\nsource_idle_s = {idle_s}\n")
    env.create_topics()
    worker = env.start_worker("idle")
    acct = account_in_partition(0, 2, "acct_idle")
    requests = [
        event(acct, T0 + 30 * i, f"idle-{i}", plan="free", prompt_tokens=60_000) for i in range(5)
    ]
    _produce(env, requests, [], 0)
    _wait_consumed(worker, len(requests))
    other = account_in_partition(1, 2, "acct_idle")
    _produce(env, [event(other, T0 + 10, "idle-src1")], [], 1)
    _wait_consumed(worker, len(requests) + 1)
    quiet_since = time.monotonic()
    _produce(
        env, [event(account_in_partition(0, 2, "acct_idle_end"), T0 + 3600, "idle-end")], [], 0
    )
    deadline = quiet_since + idle_s + 30
    while worker.metric_sum("vigil_alerts_total") == 0:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)
    waited = time.monotonic() - quiet_since
    figures(f"idle source: window closed {waited:.1f} s after its last record (timeout {idle_s} s)")
    # Not before the timeout (source 1 still held it), and not long after it (timer: 1 s).
    assert idle_s - 1.0 <= waited <= idle_s + 10.0
    alerts = [orjson.loads(r.value) for r in env.read("alerts", idle_s=2.0)]
    assert {a["account_id"] for a in alerts} == {acct}
    # Source 1 went idle because its offsets were read and found drained, not on silence
    # alone after a failed reading (drained.py).
    assert "could not read the input partitions' offsets" not in worker.log()
    assert worker.metric_sum('vigil_input_offset_readings_total{outcome="ok"}') >= 1
    assert worker.metric_sum('vigil_input_offset_readings_total{outcome="failed"}') == 0


def test_without_repartitioning_an_empty_partition_holds_nothing(kafka_env, figures):
    """Regression: with `repartition = false` an engine closed windows on its own events
    only, so one whose partition had none never passed a window, the campaign owners
    waited for it, and every window of the others stayed held: no alert at all."""
    idle_s = 4.0
    env = kafka_env
    extra = f"[worker]\nsource_idle_s = {idle_s}\nrepartition = false\n"
    env.write_config(partitions=2, extra=extra)
    env.create_topics()
    worker = env.start_worker("no-repartition")
    acct = account_in_partition(0, 2, "acct_norep")
    requests = [
        event(acct, T0 + 30 * i, f"norep-{i}", plan="free", prompt_tokens=60_000) for i in range(5)
    ]
    end = event(account_in_partition(0, 2, "acct_norep_end"), T0 + 3600, "norep-end")
    _produce(env, [*requests, end], [], 0)  # partition 1 gets nothing
    _wait_consumed(worker, len(requests) + 1)
    since = time.monotonic()
    deadline = since + idle_s + 60
    while worker.metric_sum("vigil_alerts_total") == 0:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)
    figures(f"no repartitioning, partition 1 empty: alert {time.monotonic() - since:.1f} s")
    alerts = [orjson.loads(r.value) for r in env.read("alerts", idle_s=2.0)]
    assert {a["account_id"] for a in alerts} == {acct}
