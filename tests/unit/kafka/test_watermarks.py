"""Per-source event time: marks, their minimum, idle sources, and the engine's side."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from faust.types import TP

from streams.core.config import ConfigError, VigilConfig, WorkerSettings
from streams.core.config_checks import validate
from streams.engine.engine import Engine
from streams.kafka.backpressure import source_lead, to_pause
from streams.kafka.block import Block
from streams.kafka.bundles import decode_mark, encode_mark
from streams.kafka.watermarks import (
    EventTime,
    SourceClocks,
    newest_event_time,
    read_exchange,
    split_marks,
)
from tests.unit.kafka.fakes import IN, REP, FakeEngine, every_partition, make_processor, run_async

T0 = 1_790_812_800.0


def _line(ts, account="acct_a", i=0) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{account}-{i}-{ts}",
            "ts": ts,
            "account_id": account,
            "endpoint": "chat.completions",
            "api_key_id": "k",
            "model": "m",
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "status": 200,
            "latency_ms": 100.0,
            "ip": "10.0.0.1",
            "country": "US",
            "user_agent": "ua",
            "plan": "payg",
        }
    )


def test_minimum_over_sources_holds_back_for_the_slowest():
    c = SourceClocks(3, idle_after_s=30.0, opened=0.0)
    c.advance(0, T0 + 3600, 1.0)
    c.advance(1, T0 + 600, 1.0)
    assert c.watermark(2.0) == -math.inf  # source 2 not heard of yet, not idle yet
    c.advance(2, T0 + 900, 2.0)
    assert c.watermark(3.0) == T0 + 600
    c.advance(1, T0 + 100, 4.0)  # a mark never goes back
    assert c.watermark(5.0) == T0 + 600


def test_idle_sources_stop_holding_back_and_count_again_when_heard():
    c = SourceClocks(3, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 3600, 5.0)
    c.advance(1, T0 + 600, 5.0)
    # Source 2 was never heard of: idle 10 s after the engine opened.
    assert c.watermark(9.9) == -math.inf
    assert c.idle(10.0) == [2]
    assert c.watermark(10.0) == T0 + 600
    assert c.idle(15.0) == [0, 1, 2]
    # Every source idle: the newest mark, everything there is has been read.
    assert c.watermark(15.0) == T0 + 3600
    c.advance(2, T0 + 60, 16.0)
    assert c.watermark(16.0) == T0 + 60


def test_silence_counts_only_through_what_the_repartition_partition_held():
    """Regression: under exactly_once an open transaction holds back the records after it,
    and sources whose marks waited there went idle (docs/kafka.md, "Event time")."""
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 3600, 1.0)
    c.advance(1, T0 + 600, 1.0)
    c.exchange_read(1.0, position=50, highwater=50)  # read through, at t=1
    c.exchange_read(2.0, position=50, highwater=80)  # 30 records wait from here on
    for t in range(3, 40):
        c.exchange_read(float(t), position=50, highwater=80 + t)
    assert c.read_through == 1.0
    assert c.idle(39.0) == []  # silent for 38 s, but its marks may be in what waits
    assert c.watermark(39.0) == T0 + 600
    c.exchange_read(40.0, position=85, highwater=120)  # the commit: read through t=5
    assert c.read_through == 5.0
    assert c.idle(40.0) == []
    c.exchange_read(41.0, position=120, highwater=120)
    assert c.read_through == 41.0
    assert c.idle(41.0) == [0, 1]  # nothing from either in 40 s of what was written


def test_without_readings_of_the_repartition_partition_silence_runs_on_the_clock():
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 3600, 9.0)
    assert c.idle(15.0) == [1]
    c.exchange_read(16.0, position=0, highwater=3)  # from here on: what has been read
    assert c.idle(30.0) == []  # read through the opening only
    c.exchange_read(31.0, position=3, highwater=3)
    assert c.idle(31.0) == [0, 1]


def test_a_source_back_from_silence_gives_the_other_silent_ones_their_timeout_again():
    """Regression: after a quiet spell the first source back closed windows that the others,
    back a commit later, still had events for (the soak's burst under exactly_once)."""
    c = SourceClocks(3, idle_after_s=10.0, opened=0.0)
    for s in range(3):
        c.advance(s, T0 + 100, 1.0)
    assert c.idle(20.0) == [0, 1, 2]
    assert c.watermark(20.0) == T0 + 100  # the stream stopped: close what it brought
    c.advance(0, T0 + 900, 21.0)
    assert c.idle(22.0) == []
    assert c.watermark(22.0) == T0 + 100  # held for the others, not run to T0 + 900
    c.advance(0, T0 + 950, 25.0)  # not back from silence: re-arms nothing
    assert c.idle(31.5) == [1, 2]  # their timeout again, from 21
    assert c.watermark(31.5) == T0 + 950


def test_a_silent_source_with_records_left_is_late_not_idle():
    """With the input offsets read, silence makes a source idle only once the group has
    committed all its records, learnt after the source was last heard."""
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 3600, 1.0)
    c.advance(1, T0 + 600, 1.0)
    c.confirm_drained(5.0, {0: 5})  # source 1 still has records to read
    assert c.silent(12.0) == [0, 1]
    assert c.idle(12.0) == [0]
    assert c.watermark(12.0) == T0 + 600  # held for source 1, however long it is silent
    assert c.idle(500.0) == [0]
    c.confirm_drained(600.0, {0: 5, 1: 5})
    assert c.idle(601.0) == [0, 1]
    # Source 1 back after a long silence: the stream came back, and no reading from before
    # it says that the others have nothing new.
    c.advance(1, T0 + 700, 602.0)
    assert c.idle(700.0) == []
    c.confirm_drained(701.0, {0: 5})
    assert c.idle(701.0) == [0]
    c.confirm_drained(702.0, None)  # offsets unreadable: silence alone, as before
    assert c.idle(702.0) == [0, 1]


def test_a_drained_source_counts_only_once_its_forwards_are_read():
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 3600, 1.0)
    c.exchange_read(20.0, position=10, highwater=10)
    c.exchange_read(21.0, position=10, highwater=12)  # 2 records wait from here on
    c.confirm_drained(21.5, {0: 5, 1: 5})
    assert c.read_through == 20.0
    assert c.idle(30.0) == []  # what waits may hold forwards the reading covered
    c.exchange_read(31.0, position=12, highwater=12)
    assert c.idle(31.0) == [0, 1]


def test_a_partition_that_stays_drained_stays_idle_through_a_backlog():
    """The engine's reads trail the readings while it works off others' forwards; a source
    whose end has not moved since a reading it has read through holds nothing back."""
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    for t in range(1, 16):
        c.advance(0, T0 + 3600, float(t))
    c.exchange_read(15.0, position=100, highwater=100)
    c.confirm_drained(14.0, {1: 0})  # partition 1 is empty
    for t in range(16, 60):  # a backlog: always 50 records behind
        c.advance(0, T0 + 3600 + t, float(t))
        c.exchange_read(float(t), position=100 + 50 * (t - 16), highwater=150 + 50 * (t - 16))
        c.confirm_drained(t - 0.5, {1: 0})
        assert c.read_through < t - 0.5
        assert c.idle(float(t)) == [1], t
    c.confirm_drained(60.0, {1: 3})  # three records since, committed: drained again, anew
    assert c.idle(60.5) == []
    c.exchange_read(61.0, position=3000, highwater=3000)
    assert c.idle(61.0) == [1]


def test_a_burst_after_a_rebalance_waits_for_the_source_the_engine_never_heard():
    """Regression (fault soak, exactly_once, 10x burst after a worker's state was wiped):
    the engine opened after source 2's last records, so it never heard it, and source 2
    went idle on silence; the burst's first records on the engine's own partition then
    closed windows that source 2's share of the burst, forwarded a commit later, fell in:
    618 events went to too_late."""

    def scenario(offsets: bool) -> list[float]:
        c = SourceClocks(3, idle_after_s=30.0, opened=10.0)
        for t in range(11, 41):  # the end of the phase on sources 0 and 1
            c.advance(0, T0 + 600 + t, float(t))
            c.advance(1, T0 + 600 + t, float(t))
        if offsets:
            c.confirm_drained(45.0, {0: 5, 1: 5, 2: 5})  # all read before the burst
        seen = [c.watermark(45.0)]
        c.advance(0, T0 + 2400, 48.0)  # the burst: the engine's own partition first,
        c.advance(1, T0 + 2400, 49.0)  # then source 1's forwards
        if offsets:
            c.confirm_drained(48.2, {0: 5, 1: 5})  # source 2 has the burst's records
        seen += [c.watermark(50.0), c.watermark(75.0)]
        c.advance(2, T0 + 1800, 76.0)  # source 2's forwards, a commit late
        seen.append(c.watermark(76.0))
        return seen

    # Silence alone: source 2 stayed idle through the burst, and windows closed past the
    # events it then brought.
    old = scenario(offsets=False)
    assert old[0] == T0 + 640 and old[1] == T0 + 2400 > T0 + 1800
    new = scenario(offsets=True)
    assert new[0] == T0 + 640  # before the burst, source 2 drained and idle
    assert new[1:3] == [-math.inf, -math.inf]  # from the burst on, held for source 2
    assert new[3] == T0 + 1800


def test_a_workers_clocks_wait_for_their_first_reading():
    """The fetch position runs ahead of records fetched and not applied, so an engine that
    has applied none of its repartition partition counts from offset 0."""
    et = EventTime(2, idle_after_s=10.0, max_line_bytes=1 << 16, max_future_s=3600.0)
    c = et.clocks()
    assert c.idle(c.opened + 100.0) == []  # no reading yet: nothing known of what waits

    class Consumer:
        def log_end(self, tp):
            return 7

    read_exchange(Consumer(), "tp", None, c, c.opened + 101.0)
    assert c.idle(c.opened + 102.0) == []
    read_exchange(Consumer(), "tp", 7, c, c.opened + 103.0)
    # Read through, and silent: still not idle until the input offsets say both are drained.
    assert c.silent(c.opened + 103.0) == [0, 1]
    assert c.idle(c.opened + 103.0) == []
    c.confirm_drained(c.opened + 102.5, {0: 4, 1: 0})
    assert c.idle(c.opened + 103.0) == [0, 1]


def test_marks_behind_an_open_transaction_keep_their_sources_from_going_silent():
    """Regression: the reading took Faust's `highwater`, the last stable offset under
    exactly_once. Everything before an open transaction read, the engine counted as read
    through, and sources whose marks waited in that transaction went silent: with commits
    further apart than `source_idle_s`, windows closed early and 9,573 events went to
    too_late in one CI run. The reading now takes the log's end (`log_end`)."""
    et = EventTime(2, idle_after_s=3.0, max_line_bytes=1 << 16, max_future_s=3600.0)
    c = et.clocks()
    c.advance(0, T0, c.opened)
    c.advance(1, T0, c.opened)

    class Consumer:  # 5 records committed and applied; 4 more in an open transaction
        def highwater(self, tp):
            return 5  # what Faust answers under exactly_once

        def log_end(self, tp):
            return 9

    for t in range(1, 11):
        read_exchange(Consumer(), "tp", 5, c, c.opened + t)
    assert c.idle(c.opened + 10.0) == []  # the marks are on their way, not missing
    read_exchange(Consumer(), "tp", 9, c, c.opened + 11.0)  # committed and read
    c.confirm_drained(c.opened + 10.5, {0: 9, 1: 9})
    assert c.idle(c.opened + 11.0) == [0, 1]


def test_a_long_stall_keeps_its_readings_bounded():
    c = SourceClocks(1, idle_after_s=10.0, opened=0.0)
    for t in range(5000):
        c.exchange_read(float(t), position=0, highwater=t + 1)
    assert len(c._readings) <= 512
    c.exchange_read(5000.0, position=2000, highwater=5001)
    assert c.read_through <= 1999.0  # thinned out: maybe earlier than t=1999, never later
    c.exchange_read(5001.0, position=5001, highwater=5001)
    assert c.read_through == 5001.0


def test_marks_of_unknown_sources_are_ignored():
    c = SourceClocks(2, idle_after_s=10.0, opened=0.0)
    c.advance(5, T0, 1.0)
    c.advance(-1, T0, 1.0)
    assert c.marks == {}


def test_mark_records_round_trip_and_are_split_from_events():
    assert decode_mark(encode_mark(3, T0 + 0.125)) == (3, T0 + 0.125)
    assert decode_mark([("other", b"x")]) is None
    assert decode_mark([("vigil-watermark", b"garbage")]) is None
    ev = _line(T0)
    block = Block(
        [10, 11, 12, 13],
        [b"acct_a", None, None, b"acct_b"],
        [ev, b"", b"", ev],
        [(), tuple(encode_mark(2, T0 + 5)), (("vigil-watermark", b"bad"),), ()],
    )
    events, marks = split_marks(block)
    assert marks == [(2, T0 + 5)]
    # An empty value without a readable mark stays, for the engine to dead-letter.
    assert events.offsets == [10, 12, 13]
    same, none = split_marks(Block([1], [None], [ev], [()]))
    assert same.offsets == [1] and none == []


class _ClockedEngine(FakeEngine):
    """Records each source watermark the processor sets."""

    def __init__(self) -> None:
        super().__init__()
        self.watermarks: list[float] = []

    def set_source_watermark(self, ts: float) -> SimpleNamespace:
        self.watermarks.append(ts)
        return SimpleNamespace(alerts=[], dead_letters=[], snapshots=[], shadow_alerts=[])


def test_a_repartition_fetch_of_marks_alone_moves_its_engine_s_clocks():
    """Regression: once unpacking took marks out of a repartition Block's rows, a Block of
    marks alone had no rows, and `on_batch` skipped it as empty. With producers keyed as
    the workers place accounts nothing is forwarded, so every repartition fetch is such a
    Block: no engine heard the other sources, and no window closed (no alert at all in
    the kcat-murmur2 parity test)."""
    assignment = every_partition(4, (IN, REP))
    proc, _ = make_processor(assignment, event_time=EventTime(4, 30.0, 65_536, 86_400))
    proc.make_engine = _ClockedEngine
    marks = [encode_mark(s, T0 + s) for s in (0, 2, 3)]
    block = Block([5, 6, 7], [None] * 3, [b""] * 3, [tuple(m) for m in marks], [], 5, 8)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(REP, 1), block.unbundled())  # as the consumer thread hands it
        part = proc.parts[1]
        assert {s: part.clocks.marks.get(s) for s in (0, 2, 3)} == {s: T0 + s for s in (0, 2, 3)}
        assert part.engine.watermarks and part.engine.lines == []  # marks are no events
        assert part.next_offsets[REP] == 8

    run_async(scenario())


def test_newest_event_time_skips_what_the_engine_would_reject():
    now = T0 + 10
    lines = [_line(T0 + 5), _line(T0 + 50), None, b"{not json", _line(now + 10 * 86_400)]
    assert newest_event_time(lines, 65_536, 86_400, now) == T0 + 50
    assert newest_event_time([b"{not json", None], 65_536, 86_400, now) == -math.inf
    iso = orjson.dumps({**orjson.loads(_line(0)), "ts": "2026-10-01T00:01:00Z"})
    assert newest_event_time([iso], 65_536, 86_400, now) == T0 + 60


def test_a_source_reads_its_forwarded_records_time_from_the_consumer_threads_decode():
    """A block decoded in the consumer thread gives its source the same mark as decoding
    the records it forwarded: the rows that stayed are in `newest` already, and what the
    consumer thread read beyond the engine (lines for the reference decoder) is left out
    by both. Decoded in part, it gives a mark no later."""
    from streams.contract import _decode

    rng = np.random.default_rng(5)
    now = time.time()
    for trial in range(30):
        lines = [
            _line(T0 + float(t), f"acct_{i % 7}", i) for i, t in enumerate(rng.integers(0, 900, 40))
        ]
        lines[3] = b"{not json"
        lines[9] = _line(now + 10 * 86_400)  # too far ahead: refused by both
        stay = rng.random(40) < 0.2
        block = Block(list(range(40)), [None] * 40, lines, [()] * 40)
        block.columns = (65_536, _decode.decode(lines, 65_536))
        local = [ln for ln, s in zip(lines, stay, strict=True) if s]
        forwarded = [ln for ln, s in zip(lines, stay, strict=True) if not s]
        newest = newest_event_time(local, 65_536, 86_400, now)  # as the engine reads them
        et = EventTime(4, 30.0, 65_536, 86_400)
        by_block, by_values = et.clocks(), et.clocks()
        et.read_source(by_block, 1, 100.0, newest, forwarded, block)
        et.read_source(by_values, 1, 100.0, newest, forwarded)
        assert by_block.marks[1] == by_values.marks[1], trial
        # Columns decoded under another line limit are not this engine's: decoded again.
        block.columns = (100, block.columns[1])
        other = et.clocks()
        et.read_source(other, 1, 100.0, newest, forwarded, block)
        assert other.marks[1] == by_values.marks[1]
        # Only some rows decoded (those that stayed, and the last ones): the mark is the
        # newest time among them and `newest`, never past the one every row gives.
        rows = np.flatnonzero(stay | (np.arange(40) >= 30))
        block.columns = (65_536, _decode.decode([lines[i] for i in rows], 65_536))
        block.columns_rows = rows
        part = et.clocks()
        et.read_source(part, 1, 100.0, newest, forwarded, block)
        tail = newest_event_time([lines[i] for i in rows], 65_536, 86_400, now)
        assert part.marks[1] == max(newest, tail) <= by_values.marks[1]


def test_marks_are_sent_to_every_other_partition_at_most_every_interval():
    et = EventTime(4, 30.0, 65_536, 86_400, send_every_s=1.0)
    c = et.clocks()
    et.read_source(c, 1, 100.0, undecoded=[_line(T0 + 7)])
    due = et.marks_due(1, c.marks[1], 100.0)
    assert [p for p, _ in due] == [0, 2, 3]
    assert decode_mark(due[0][1]) == (1, T0 + 7)
    et.read_source(c, 1, 100.5, newest=T0 + 8)
    assert et.marks_due(1, c.marks[1], 100.5) == []  # too soon
    assert [p for p, _ in et.marks_due(1, c.marks[1], 100.6, force=True)] == [0, 2, 3]
    assert et.marks_due(1, c.marks[1], 200.0, force=True) == []  # nothing new read


def _engine() -> Engine:
    return Engine(VigilConfig(), detectors={})


def test_engine_closes_windows_on_the_source_watermark_when_given():
    from streams.contract.events import decode_lines

    e = _engine()
    e.set_source_watermark(-math.inf)
    batch, _ = decode_lines([_line(T0 + 10), _line(T0 + 4000, "acct_b")], T0 + 5000)
    e.process_events(batch)
    assert e.closed_until == -math.inf  # its own newest event would have closed T0's window
    e.set_source_watermark(T0 + 360)
    assert e.closed_until == T0 + 300  # lateness 60 s, windows of 300 s
    out = e.process_events(decode_lines([_line(T0 + 20, "acct_c")], T0 + 5000)[0])
    assert [d.reason for d in out.dead_letters] == ["too_late"]


def test_engine_without_a_source_watermark_keeps_replays_rule():
    from streams.contract.events import decode_lines

    e = _engine()
    batch, _ = decode_lines([_line(T0 + 10), _line(T0 + 4000, "acct_b")], T0 + 5000)
    e.process_events(batch)
    w = 300
    assert e.closed_until == np.floor((T0 + 4000 - 60) / w) * w


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_source_idle_must_be_positive(bad):
    with pytest.raises(ConfigError, match="worker.source_idle_s"):
        validate(VigilConfig(worker=WorkerSettings(source_idle_s=bad)))


def test_gauges_report_idle_sources_and_how_far_closing_trails():
    from prometheus_client import CollectorRegistry

    from streams.kafka.metrics import WorkerMetrics

    wm = WorkerMetrics(CollectorRegistry())
    et = EventTime(3, 10.0, 65_536, 86_400)
    c = SourceClocks(3, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 900, 5.0)
    c.advance(1, T0 + 300, 5.0)
    e = _engine()
    e.max_ts = T0 + 1000
    et.report(wm, [(c, e)], 12.0)  # source 2 idle; closing waits for source 1
    assert wm.idle_sources._value.get() == 1
    assert wm.late_sources._value.get() == 0
    assert wm.event_time_held._value.get() == 700
    c.confirm_drained(11.0, {0: 5, 1: 5})  # source 2 has records no one sent on
    et.report(wm, [(c, e)], 16.0)
    assert wm.idle_sources._value.get() == 2
    assert wm.late_sources._value.get() == 1
    assert wm.event_time_held._value.get() == 0  # never closed: no trail to measure yet
    e.closed_until = T0 + 600
    et.report(wm, [(c, e)], 16.0)
    assert wm.event_time_held._value.get() == 400  # held from the engine's last close


def test_windows_closed_by_the_source_watermark_count_their_dead_letters():
    class Broken:
        name, version = "broken", "0"

        def score_learn(self, batch):
            raise RuntimeError("boom")

        def reserve(self, n):
            pass

        def forget(self, accounts):
            pass

        def state_dict(self):
            return {}

    e = Engine(VigilConfig(), detectors={"broken": Broken()}, clock=lambda: T0 + 86_400)
    e.set_source_watermark(-math.inf)
    assert not e.process_lines([_line(T0 + 1), _line(T0 + 2, "acct_b")]).dead_letters
    out = e.set_source_watermark(T0 + 3600)
    assert [d.reason for d in out.dead_letters] == ["processing_error"] * 2
    rejected = e.metrics.events_rejected.labels("processing_error")._value.get()
    assert rejected == 2  # as when process_lines closes the window itself


def test_the_engine_reports_the_newest_event_it_decoded_for_the_marks():
    e = _engine()
    e.process_lines([_line(T0 + 5), b"{not json", _line(T0 + 3)])
    assert e.newest_read == T0 + 5
    e.process_lines([_line(T0 + 1)])  # older than what the engine has seen: still reported
    assert e.newest_read == T0 + 1 and e.max_ts == T0 + 5
    e.process_lines([b"{not json"])
    assert e.newest_read == -math.inf


def test_a_source_paused_by_backpressure_does_not_go_silent():
    """A source paused with records left keeps holding the others back: its own engine hears
    it again, and its last mark is due again for every other partition."""
    et = EventTime(3, idle_after_s=10.0, max_line_bytes=1 << 16, max_future_s=3600.0)
    c = SourceClocks(3, idle_after_s=10.0, opened=0.0)
    c.advance(0, T0 + 100, 1.0)
    c.advance(1, T0 + 300, 1.0)
    c.advance(2, T0 + 300, 1.0)
    et.held_back(c, 0, 9.0)  # paused at 9 s: heard again, mark unchanged
    assert c.idle(15.0) == [1, 2]
    assert c.watermark(15.0) == T0 + 100  # not run past the paused source's records
    assert [p for p, _ in et.marks_due(0, c.marks[0], 15.0, force=True)] == [1, 2]
    et.held_back(c, 1, 16.0)  # never read: nothing to hold back with
    c2 = SourceClocks(3, idle_after_s=10.0, opened=0.0)
    et.held_back(c2, 1, 16.0)
    assert c2.marks == {} and et.marks_due(1, -math.inf, 16.0, force=True) == []


def test_one_event_from_a_fast_clock_does_not_pause_its_partition():
    """Regression: the lead was first taken from the source's mark, the newest event read,
    and one event a day ahead (max_future_s allows it) paused its partition for a day."""
    eng = Engine(VigilConfig())
    now = time.time()
    lines = [_line(now - 600 + i) for i in range(99)] + [_line(now + 86_000)]
    eng.process_lines(lines)
    assert eng.newest_read > now + 80_000
    assert source_lead(eng.median_read, now - 600) < 60
    assert not to_pause([(0, 0, source_lead(eng.median_read, now - 600))], {0}, 12, 600)
