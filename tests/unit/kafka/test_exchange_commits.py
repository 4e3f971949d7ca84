"""exactly_once: what an exchange commit publishes between checkpoints, and what it leaves
to the checkpoint (streams/kafka/outputs.py, Persistence.exchange_commit)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from streams.kafka.processor import Topics
from tests.unit.kafka.test_kafka_units import IN, REP, _processor, _records, _run

CAMPAIGN = "t-campaign"


class FakeTransactions:
    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []

    def id_for(self, partition: int) -> str:
        return f"txn-{partition}"

    async def commit(self, offsets: dict[TP, int]) -> None:
        self.commits.append(dict(offsets))


def _eos_processor():
    assignment = {TP(t, p) for t in (IN, REP, CAMPAIGN) for p in range(2)}
    proc, _ = _processor(assignment)
    proc.topics = Topics(IN, REP, "t-alerts", "t-dead", "t-snapshots", campaign=CAMPAIGN)
    proc.txn = FakeTransactions()
    proc.on_assigned(assignment)
    return proc


def test_alerts_and_dead_letters_wait_for_the_checkpoint_the_exchange_does_not():
    proc = _eos_processor()
    sent = proc.app.producer.sent

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), _records(0, 1))
        await proc.on_batch(TP(IN, 1), _records(0))
        alert = SimpleNamespace(account_id="acct_1", to_json=lambda: b"{}")
        out = SimpleNamespace(alerts=[alert], shadow_alerts=[], dead_letters=[], snapshots=[])
        await proc._emit(out, TP(IN, 0))
        await proc._dead_letter(b"x", "bad_json", "detail", TP(IN, 0))
        assert sent == [], "an alert or dead letter went out before the checkpoint"
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)  # a request
        await proc._send(REP, None, b"", [], 1, source=0)  # an event-time mark
        await proc._send(REP, b"acct_9", b'{"account_id": "acct_9"}', [], 0, source=1)
        assert [a[0] for a in sent] == [CAMPAIGN, REP, REP]
        assert proc.exchanged == {0} and proc.bound == {1}

        # The exchange commit: partition 0 only (1 forwarded an event), at the offsets its
        # last checkpoint covers, none yet: where it was first read from.
        await proc.exchange_commit()
        assert proc.txn.commits == [{TP(IN, 0): 0}]
        assert proc.exchanged == set() and proc.bound == {1}
        assert [a[0] for a in sent] == [CAMPAIGN, REP, REP], "nothing released"

        # The checkpoint sends what was held, then commits every partition's offsets.
        await proc.checkpoint()
        topics = [a[0] for a in sent]
        assert topics[:3] == [CAMPAIGN, REP, REP] and "t-alerts" in topics[3:]
        assert "t-dead" in topics[3:] and proc.held == []
        assert proc.txn.commits[-1] == {TP(IN, 0): 2, TP(IN, 1): 1}
        assert proc.bound == set() and proc.exchanged == set()
        alert_txn = next(a[-1] for a in sent if a[0] == "t-alerts")
        assert alert_txn == "txn-0", "a held output joins its own partition's transaction"

        # Later exchange commits repeat the checkpoint's offsets, not the newer ones read.
        await proc.on_batch(TP(IN, 0), _records(2, 3))
        await proc._send(CAMPAIGN, None, b"{}", [], 1, source=0)
        await proc.exchange_commit()
        assert proc.txn.commits[-1] == {TP(IN, 0): 2}

    _run(scenario())


def test_a_leaving_partition_releases_only_its_own_held_outputs():
    proc = _eos_processor()

    async def scenario() -> None:
        await proc.on_batch(TP(IN, 0), _records(0))
        await proc.on_batch(TP(IN, 1), _records(0))
        await proc._dead_letter(b"a", "bad_json", "", TP(IN, 0))
        await proc._dead_letter(b"b", "bad_json", "", TP(IN, 1))
        await proc.checkpoint(partitions={1}, final=True)
        released = [a[2] for a in proc.app.producer.sent if a[0] == "t-dead"]
        assert released == [b"b"]
        assert [source for source, _ in proc.held] == [0]

    _run(scenario())


def test_under_at_least_once_nothing_is_held():
    assignment = {TP(IN, 0)}
    proc, _ = _processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 0), _records(0))
        await proc._dead_letter(b"a", "bad_json", "", TP(IN, 0))
        assert [a[0] for a in proc.app.producer.sent] == ["t-dead"] and proc.held == []
        assert not proc.exchange_commit_due(proc.last_commit + 60.0)

    _run(scenario())
