"""Pausing the input while an engine holds too many windows not yet scored."""

from __future__ import annotations

from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.kafka.backpressure import Backpressure

INPUTS = {TP("usage", 0), TP("usage", 1)}


class _Consumer:
    """Records what Faust's public pause_partitions and resume_partitions were asked."""

    def __init__(self) -> None:
        self.paused: set[TP] = set()
        self.calls: list[tuple[str, set[TP]]] = []
        self.assigned = set(INPUTS)

    def pause_partitions(self, tps):
        self.calls.append(("pause", set(tps)))
        self.paused |= set(tps)

    def resume_partitions(self, tps):
        self.calls.append(("resume", set(tps)))
        self.paused -= set(tps)

    def assignment(self):
        return self.assigned


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()
        self.rebalancing = False
        self.in_recovery = False


def _bp(limit: int = 2) -> Backpressure:
    r = CollectorRegistry()
    return Backpressure(limit, Gauge("paused", "", registry=r), Counter("pauses", "", registry=r))


def test_pauses_over_the_limit_and_resumes_once_every_engine_is_under():
    app, bp = _App(), _bp(limit=2)
    bp.update(app, [2, 1], INPUTS)  # at the limit: no pause
    assert app.consumer.calls == []
    bp.update(app, [3, 0], INPUTS)
    assert app.consumer.paused == INPUTS and bp.paused_gauge._value.get() == 2
    bp.update(app, [4, 3], INPUTS)  # still over: nothing asked again, one pause counted
    assert app.consumer.calls == [("pause", INPUTS)] and bp.pauses._value.get() == 1
    bp.update(app, [2, 3], INPUTS)  # one engine still over
    assert app.consumer.paused == INPUTS
    bp.update(app, [2, 2], INPUTS)
    assert app.consumer.paused == set() and bp.paused_gauge._value.get() == 0
    bp.update(app, [5], INPUTS)
    assert bp.pauses._value.get() == 2


def test_never_resumes_while_faust_rebalances_or_recovers():
    """Faust pauses every partition while it restores tables: resuming one then would
    hand records to an engine whose state is not restored yet."""
    app, bp = _App(), _bp()
    bp.update(app, [9], INPUTS)
    for flag in ("rebalancing", "in_recovery"):
        setattr(app, flag, True)
        bp.update(app, [0], INPUTS)
        assert app.consumer.paused == INPUTS, flag
        setattr(app, flag, False)
    bp.update(app, [0], INPUTS)
    assert app.consumer.paused == set()


def test_resumes_only_partitions_still_assigned_and_forgets_at_an_assignment():
    app, bp = _App(), _bp()
    bp.update(app, [9], INPUTS)
    app.consumer.assigned = {TP("usage", 1)}
    bp.update(app, [0], INPUTS)
    assert app.consumer.calls[-1] == ("resume", {TP("usage", 1)})
    bp.update(app, [9], INPUTS)
    bp.forget()  # a new assignment: Faust pauses and resumes every partition itself
    bp.update(app, [0], INPUTS)
    assert app.consumer.calls[-1][0] == "pause" and bp.paused_gauge._value.get() == 0
