"""Pausing input partitions: engines holding too many windows unscored, sources far ahead."""

from __future__ import annotations

import math

from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.kafka.backpressure import Backpressure, source_lead, to_pause

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


def _bp() -> Backpressure:
    r = CollectorRegistry()
    return Backpressure(Gauge("paused", "", registry=r), Counter("pauses", "", registry=r))


P0, P1 = TP("usage", 0), TP("usage", 1)


def test_every_input_pauses_while_an_engine_holds_too_many_windows():
    both = {0, 1, 2}  # partition 2 assigned, its engine not open yet
    assert to_pause([(0, 2, 0.0), (1, 1, 0.0)], both, limit=2, max_lead_s=600) == set()
    assert to_pause([(0, 3, 0.0), (1, 0, 0.0)], both, limit=2, max_lead_s=600) == both
    # Otherwise only the sources that lead the slowest by more than the bound.
    assert to_pause([(0, 0, 601.0), (1, 0, 0.0)], both, limit=2, max_lead_s=600) == {0}
    assert to_pause([], both, limit=2, max_lead_s=600) == set()


def test_past_the_byte_bound_every_source_but_the_slowest_pauses():
    both = {0, 1, 2}
    owned = [(0, 0, 120.0), (1, 0, -30.0), (2, 0, 5.0)]  # 1 is the slowest source
    assert to_pause(owned, both, limit=2, max_lead_s=600) == set()
    assert to_pause(owned, both, limit=2, max_lead_s=600, over_bytes=True) == {0, 2}
    # A source whose lead is not known yet (0) keeps reading: it may be the slowest.
    assert to_pause([(0, 0, 0.0), (1, 0, 9.0)], both, 2, 600, over_bytes=True) == {1}


def test_a_sources_lead_is_over_the_event_time_its_engine_closes_on():
    assert source_lead(5000.0, 1000.0) == 4000.0
    assert source_lead(-math.inf, 1000.0) == 0.0  # nothing read from it yet
    assert source_lead(5000.0, -math.inf) == 0.0  # a source unheard, not silent yet


def test_pauses_what_is_wanted_and_resumes_what_no_longer_is():
    app, bp = _App(), _bp()
    bp.update(app, set())
    assert app.consumer.calls == []
    bp.update(app, {P0})
    assert app.consumer.paused == {P0} and bp.paused_gauge._value.get() == 1
    bp.update(app, INPUTS)  # one more: the same episode, one pause counted
    assert app.consumer.calls == [("pause", {P0}), ("pause", {P1})]
    assert bp.pauses._value.get() == 1
    bp.update(app, {P1})
    assert app.consumer.paused == {P1} and app.consumer.calls[-1] == ("resume", {P0})
    bp.update(app, set())
    assert app.consumer.paused == set() and bp.paused_gauge._value.get() == 0
    bp.update(app, {P0})
    assert bp.pauses._value.get() == 2


def test_never_resumes_while_faust_rebalances_or_recovers():
    """Faust pauses every partition while it restores tables: resuming one then would
    hand records to an engine whose state is not restored yet."""
    app, bp = _App(), _bp()
    bp.update(app, INPUTS)
    for flag in ("rebalancing", "in_recovery"):
        setattr(app, flag, True)
        bp.update(app, set())
        assert app.consumer.paused == INPUTS, flag
        setattr(app, flag, False)
    bp.update(app, set())
    assert app.consumer.paused == set()


def test_resumes_only_partitions_still_assigned_and_forgets_at_an_assignment():
    app, bp = _App(), _bp()
    bp.update(app, INPUTS)
    app.consumer.assigned = {P1}
    bp.update(app, set())
    assert app.consumer.calls[-1] == ("resume", {P1})
    bp.update(app, INPUTS)
    bp.forget()  # a new assignment: Faust pauses and resumes every partition itself
    bp.update(app, set())
    assert app.consumer.calls[-1][0] == "pause" and bp.paused_gauge._value.get() == 0
