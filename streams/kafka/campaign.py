"""The campaign exchange over the campaign topic: requests, progress and figures.

Engines close windows in two phases (streams/engine/exchange.py). The campaign topic has
as many partitions as the input and is consumed like the repartition topic, so the worker
owning input partition p owns campaign partition p, and with it the desk (the owner of
the keys routed to p, streams/runtime/campaign_desk.py) and the figures p's engine has
received. Three kinds of record, told by the `vigil-campaign` header, values in JSON:

- request (source -> every owner k): a window's memberships routed to k, often none;
- progress (source -> every owner): requests sent up to `passed`, windows completed
  before `done` as of the source's last checkpoint (owners drop figures before it);
- figures (owner -> every source): a window's figures of the source's keys, none allowed,
  so the source knows that owner answered.

Each record is an output of the input partition whose processing made it (`_send` with
its source), so under exactly_once it joins that partition's transaction; the desk and the
figures go into that partition's checkpoint with the campaign topic's offset. These
records are not events: they never reach the decoder, the watermarks or the audit.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import orjson
from faust.types import TP

from streams.core.alerts import rfc3339
from streams.features.campaign_split import Memberships
from streams.kafka.block import Block
from streams.kafka.campaign_records import (
    Parts,
    decode_figures,
    decode_request,
    figures_values,
    join_figures,
    part_of,
    request_values,
)
from streams.kafka.outputs import Outputs
from streams.runtime.campaign_desk import Answers, Desk, owner_of

log = logging.getLogger(__name__)

HEADER = "vigil-campaign"
REQUEST, PROGRESS, FIGURES = b"request", b"progress", b"figures"
BAD_RECORD = "processing_error"  # one of the closed set of reasons (contract/reference.py)


def _t(x: float) -> float | None:
    return None if x == -math.inf else float(x)  # JSON has no -inf


def _from_t(x: float | None) -> float:
    return -math.inf if x is None else float(x)


def _kind(headers: Any) -> bytes | None:
    for key, value in headers or ():
        if key == HEADER:
            return value
    return None


class CampaignExchange(Outputs):
    """The Processor's exchange half; the Processor sets these in its __init__."""

    owners: int  # partitions of the campaign topic: owners and sources alike
    record_bytes: int  # requests and figures over this go in parts (campaign_records.py)

    async def _after_emit(self, out: Any, tp: TP) -> None:
        """After Outputs' emit: the output's campaign requests and the source's progress."""
        part = self.parts.get(tp.partition)
        if part is not None:
            await self._send_requests(part, out)

    def _open_exchange(self, part: Any, state: dict | None) -> None:
        """The desk and figures of a newly opened partition, restored from `state`."""
        engine = part.engine
        if not self.topics.campaign or not getattr(engine, "campaign_exchange", False):
            return
        max_keys = engine.campaign.index["subnet"].max_keys
        part.desk = Desk(engine.cfg.engine.campaign_horizon_s, max_keys, self.owners)
        part.answers = Answers(self.owners)
        part.parts = Parts()
        if state is not None:
            part.desk.load_state_dict(state["desk"])
            part.answers.load_state_dict(state["answers"])
            part.parts.load_state_dict(state.get("parts", {}))  # none before parts

    @staticmethod
    def exchange_state(part: Any) -> dict | None:
        if part.desk is None:
            return None
        return {
            "desk": part.desk.state_dict(),
            "answers": part.answers.state_dict(),
            "parts": part.parts.state_dict(),
        }

    async def _send_requests(self, part: Any, out: Any) -> None:
        """The requests of an engine's output, to every owner, then its progress."""
        if part.desk is None:
            return
        topic, p = self.topics.campaign, part.partition
        for window_end, m in getattr(out, "campaign_requests", ()):
            to = owner_of(m.kind, m.code, self.owners)
            for k in range(self.owners):
                mine = m.take(np.flatnonzero(to == k))
                for value in request_values(p, window_end, mine, self.record_bytes):
                    await self._send(topic, None, value, [(HEADER, REQUEST)], k, p)
        await self._send_progress(part)

    async def _send_progress(self, part: Any) -> None:
        if part.desk is None:
            return
        now = (part.engine.campaign_passed, part.done)
        if now == part.progress_sent:
            return
        part.progress_sent = now
        p = part.partition
        value = orjson.dumps({"s": p, "passed": _t(now[0]), "done": _t(now[1])})
        for k in range(self.owners):
            await self._send(self.topics.campaign, None, value, [(HEADER, PROGRESS)], k, p)

    def _checkpointed(self, part: Any) -> None:
        """The state just written: windows before `done` are completed for good."""
        part.done = done_in_state(part)

    async def _on_campaign(self, part: Any, tp: TP, records: Block) -> None:
        """A block of the campaign topic: requests and progress to the desk, figures to
        the engine; then the answers due, and the held windows now complete."""
        if part.desk is None:
            return
        answers = []
        held = {h.end for h in part.engine.held}
        for value, headers in zip(records.values, records.headers, strict=True):
            kind = _kind(headers)
            try:
                d = orjson.loads(value or b"")
                if kind == REQUEST:
                    s, w, m = decode_request(d)
                    whole = part.parts.add(REQUEST, s, w, *part_of(d), m)
                    if whole is not None:
                        stale = part.desk.stale
                        answers += part.desk.request(w, s, Memberships.concat(w, whole))
                        if part.desk.stale > stale:
                            self._stale_request(tp, s, w)
                elif kind == PROGRESS:
                    s = int(d["s"])
                    answers += part.desk.progress(s, _from_t(d["passed"]), _from_t(d["done"]))
                elif kind == FIGURES:
                    owner, w, figures = decode_figures(d)
                    if w in held:  # else completed already, or to be asked for again
                        whole = part.parts.add(FIGURES, owner, w, *part_of(d), figures)
                        if whole is not None:
                            part.answers.add(owner, w, join_figures(whole))
                else:
                    raise ValueError(f"no {HEADER} header of a known kind: {kind!r}")
            except Exception as exc:  # noqa: BLE001 - said in the dead letter
                detail = f"campaign record not understood: {type(exc).__name__}: {exc}"
                log.error("%s: %s", tp, detail)
                self.metrics.events_rejected.labels(BAD_RECORD).inc()
                await self._dead_letter(value or b"", BAD_RECORD, detail, tp)
        # A window applied and since dropped needs no request parts; one still held in
        # `applied` does: a restored source re-sends its request and is answered again.
        desk = part.desk
        part.parts.drop(REQUEST, lambda w: w <= desk.applied_until and w not in desk.applied)
        p = part.partition
        for source, w, figures in answers:
            for value in figures_values(p, w, figures, self.record_bytes):
                await self._send(self.topics.campaign, None, value, [(HEADER, FIGURES)], source, p)
        await self._complete_held(part)

    def _stale_request(self, tp: TP, source: int, window_end: float) -> None:
        """A request for a window its owner applied without it: the progress that let the
        owner do so ran ahead of the request. Counted and said, never silent."""
        self.wm.campaign_requests_stale.inc()
        log.warning(
            "%s: the campaign request of source %d for the window ending %s came after that "
            "window was applied without it; its figures leave that source's accounts out",
            tp, source, rfc3339(window_end),
        )  # fmt: skip

    async def _complete_held(self, part: Any) -> None:
        if part.desk is None:
            return
        e = part.engine
        tp = TP(self.topics.input, part.partition)
        while e.held:
            w = e.held[0].end
            figures = part.answers.complete(w)
            if figures is None:
                break
            part.answers.drop_until(w)
            part.parts.drop(FIGURES, lambda x, w=w: x <= w)
            await self._emit(e.complete_window(w, figures), tp)


def done_in_state(part: Any) -> float:
    """The end of the windows that the engine's state now holds completed for good: a
    checkpoint of this state lets the owners drop their figures (`progress`)."""
    if part.desk is None:
        return part.done
    e = part.engine
    return e.held[0].end if e.held else e.campaign_passed
