"""The worker's side of the campaign exchange (streams/kafka/campaign.py)."""

from __future__ import annotations

import logging

import numpy as np
from faust.types import TP

from streams.kafka.campaign import HEADER, REQUEST
from streams.kafka.campaign_records import Parts, encode_request
from streams.runtime.campaign_desk import Answers, Desk
from tests.unit.kafka.fakes import IN, block_of, make_processor, run_async
from tests.unit.kafka.test_exchange_commits import CAMPAIGN
from tests.unit.runtime.test_campaign_desk import W, members


def test_a_request_for_a_window_applied_without_it_is_counted_and_said(caplog) -> None:
    """An owner that applied a window before one source's request came (that source's
    progress had passed it) computed figures without the source's accounts: it must show."""
    proc, _ = make_processor({TP(IN, 0)})
    proc.topics.campaign = CAMPAIGN
    part = proc._open(0)
    part.engine.held = []  # the engine holds no window for figures
    part.desk, part.answers, part.parts = Desk(3600.0, 10_000, sources=2), Answers(2), Parts()
    part.desk.request(2 * W, 0, members(2 * W, ["a"]))
    part.desk.progress(1, passed=2 * W, done=-np.inf)  # source 1 said it sent up to 2W
    assert part.desk.applied_until == 2 * W

    def stale() -> float | None:
        return proc.metrics.registry.get_sample_value("vigil_campaign_requests_stale_total")

    late = block_of([encode_request(1, W, members(W, ["b"]))], [((HEADER, REQUEST),)])
    again = block_of([encode_request(0, 2 * W, members(2 * W, ["a"]))], [((HEADER, REQUEST),)])
    with caplog.at_level(logging.WARNING, logger="streams.kafka.campaign"):
        run_async(proc._on_campaign(part, TP(CAMPAIGN, 0), again))  # a re-sent one: answered
        assert stale() == 0
        run_async(proc._on_campaign(part, TP(CAMPAIGN, 0), late))
    assert stale() == 1
    assert "source 1" in caplog.text and "came after that window was applied" in caplog.text
