"""Console snapshots: when a worker sends them, and that building them never stops
detection (streams/kafka/outputs.py)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from faust.types import TP

from tests.unit.kafka.fakes import (
    IN,
    FakeEngine,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def test_snapshots_wait_for_their_interval_except_on_revoke_and_stop(monkeypatch):
    # Built from the picks as they stand when sent: one record per account, latest pick.
    monkeypatch.setattr(
        "streams.kafka.outputs.latest",
        lambda picks: [(a, {"account_id": a, "row": i}) for a, (_, i) in picks.items()],
    )
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment, snapshot_interval_s=3600.0)
    sent = proc.app.producer.sent

    def snapshots_sent() -> list[tuple[bytes, int]]:
        return [(a[1], orjson.loads(a[2])["row"]) for a in sent if a[0] == "t-snapshots"]

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.snapshots.picks = {"acct_1": (None, 1), "acct_2": (None, 2)}
        await proc.checkpoint()  # within the interval: kept for later
        assert snapshots_sent() == [] and len(proc.snapshots) == 2
        proc.snapshots.picks["acct_1"] = (None, 7)  # a newer window replaces the older pick
        await proc.checkpoint({1})  # partitions leaving: everything pending goes out
        assert sorted(snapshots_sent()) == [(b"acct_1", 7), (b"acct_2", 2)]
        proc.snapshots.picks = {"acct_3": (None, 3)}
        proc.last_snapshots -= 3600.0  # the interval has passed
        await proc.checkpoint()
        assert (b"acct_3", 3) in snapshots_sent() and not proc.snapshots
        proc.snapshots.picks = {"acct_4": (None, 4)}
        await proc.checkpoint(final=True)  # stopping: nothing stays behind
        assert (b"acct_4", 4) in snapshots_sent()

    run_async(scenario())


def test_snapshots_are_built_beside_the_engines_and_sent_with_their_checkpoint(monkeypatch):
    # Building them (a dict and its JSON per account) stopped the engines for up to 1.7 s.
    locked_while_built = []

    def build(picks):
        locked_while_built.append(proc.lock.locked())
        return [(a, {"account_id": a, "row": i}) for a, (_, i) in picks.items()]

    monkeypatch.setattr("streams.kafka.outputs.latest", build)
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment, snapshot_interval_s=0.0)
    sent = proc.app.producer.sent

    async def scenario() -> None:
        proc.on_assigned(assignment)
        proc.snapshots.picks = {"acct_1": (None, 1), "acct_2": (None, 2)}
        await proc.checkpoint()
        assert locked_while_built == [False]
        assert sorted(a[1] for a in sent if a[0] == "t-snapshots") == [b"acct_1", b"acct_2"]
        assert not proc.snapshots

    run_async(scenario())


def test_a_failing_snapshot_build_is_counted_and_detection_goes_on(monkeypatch):
    assignment = every_partition(4, (IN,))
    proc, _ = make_processor(assignment)

    def failures() -> float | None:
        return proc.metrics.registry.get_sample_value("vigil_snapshot_failures_total")

    class Broken:
        def rows(self, which):
            raise ValueError("no such field")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), record_block(0, 1))
        proc.snapshots.picks = {"acct_1": (Broken(), 0)}
        await proc.checkpoint()
        assert failures() == 1 and len(proc.snapshots) == 0
        assert proc.app.consumer.ready_offsets[TP(IN, 0)] == 2  # the checkpoint went on
        # Holding a window that cannot be read is counted too, and the batch still counts.
        monkeypatch.setattr(
            FakeEngine, "process_lines",
            lambda self, lines: SimpleNamespace(alerts=[], dead_letters=[], snapshots=[None], shadow_alerts=[]),
        )  # fmt: skip
        await proc.on_batch(TP(IN, 0), record_block(2))
        assert failures() == 2 and proc.consumed == 3

    run_async(scenario())
