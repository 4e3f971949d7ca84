"""A transport-free runner of P engines on account partitions with K owners of campaign keys.

What a Kafka runner will do with topics, done with lists: the lines go to the engine of
their account's murmur2 partition, every engine is advanced by the same event-time
watermark, each window's memberships go to the owners of their keys (a hash of kind and
key, as in tests/unit/features/test_campaign_split.py), an owner applies a window once
every source has sent its memberships of it or passed it with none, and the figures go
back to the engines, which complete their held windows in order.

`python -m tests.unit.engine.exchange_driver EVENTS.jsonl.gz` prints the accounts alerted
by one engine and by the partitions with the exchange, by category.
"""

from __future__ import annotations

import gzip
import pickle
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from streams.core.alerts import Alert
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from streams.features.campaign_split import KeyFigures, KeyRef, Memberships
from streams.kafka import checkpoint
from streams.kafka.routing import partition_for
from streams.runtime.campaign_desk import Desk, owner_of
from streams.runtime.checkpoint_codec import decode_state, encode_state

BATCH = 4096


def account_partition(line: bytes, p: int) -> int:
    try:
        key = orjson.loads(line)["account_id"].encode()
    except Exception:  # a line the engine will dead-letter: any partition does
        key = b""
    return partition_for(key, p)


class Split:
    """P engines with the exchange, K desks, and the loop between them."""

    def __init__(
        self,
        p: int = 8,
        k: int = 8,
        config: VigilConfig | None = None,
        make_engine: Callable[[], Engine] | None = None,
        journal: bool = False,
    ) -> None:
        self.p, self.k = p, k
        # As the worker does: a checkpoint after every batch, without the events of open
        # and held windows, which go into journal segments; restores read them back.
        self.journal = journal
        self.tables: list[dict] = [{} for _ in range(p)]
        self.cfg = config or VigilConfig()
        self.make_engine = make_engine or (
            lambda: Engine(self.cfg, detectors=None, campaign_exchange=True)
        )
        self.engines = [self._new_engine() for _ in range(p)]
        for e in self.engines:
            e.set_source_watermark(-np.inf)  # windows close on the shared watermark only
        e0 = self.engines[0].cfg.engine
        max_keys = self.engines[0].campaign.index["subnet"].max_keys
        self.desks = [Desk(e0.campaign_horizon_s, max_keys) for _ in range(k)]
        self.alerts: list[Alert] = []
        self.requests = 0
        self.completed = 0
        self.most_held = 0  # the most windows one engine held at once: pipelining happened
        self.restored_without_events = 0  # held windows a restore took from the journal
        self.held_written = 0  # held windows put in held segments by the checkpoints

    def _new_engine(self) -> Engine:
        e = self.make_engine()
        e.journal_pending = self.journal
        return e

    # ---- the engines' side ---------------------------------------------------------
    def feed(self, lines: list[bytes], complete: bool = True) -> None:
        parts: list[list[bytes]] = [[] for _ in range(self.p)]
        for ln in lines:
            parts[account_partition(ln, self.p)].append(ln)
        for i, e in enumerate(self.engines):
            self._take(i, e.process_lines(parts[i]))
        watermark = max(e.max_ts for e in self.engines)
        for i, e in enumerate(self.engines):
            self._take(i, e.set_source_watermark(watermark))
        self.pump(complete)
        if self.journal:
            for i, e in enumerate(self.engines):
                lines_, newest = e.take_journal()
                state = e.state_dict(pending=False)
                held = checkpoint.split_held(self.tables[i], "t", i, state)
                held.encode()
                self.held_written += len(held.new)
                blob = encode_state(state)
                journal = checkpoint.encode_journal(lines_)
                checkpoint.write(
                    self.tables[i], "t", i, blob, {}, journal, newest, e.journal_floor, held=held
                )

    def flush(self) -> None:
        for i, e in enumerate(self.engines):
            self._take(i, e.flush())
        self.pump()

    def _take(self, source: int, out: Any) -> None:
        self.alerts += out.alerts
        for window_end, m in out.campaign_requests:
            self.requests += 1
            to = owner_of(m.kind, m.code, self.k)
            for o, desk in enumerate(self.desks):  # every owner hears of every window
                desk.receive(window_end, source, m.take(np.flatnonzero(to == o)))
        self.most_held = max(self.most_held, len(self.engines[source].held))

    # ---- the loop ------------------------------------------------------------------
    def pump(self, complete: bool = True) -> None:
        """Apply every window all sources have sent or passed, then (if `complete`) give
        the engines their figures, until nothing moves."""
        while True:
            self._apply_ready()
            if not complete or not self._complete_some():
                return

    def _apply_ready(self) -> None:
        passed = [e.campaign_passed for e in self.engines]
        while True:
            waiting = sorted({w for desk in self.desks for w, _ in desk.inbox})
            if not waiting:
                return
            w = waiting[0]
            sent = {s for desk in self.desks for ww, s in desk.inbox if ww == w}
            if any(s not in sent and passed[s] < w for s in range(self.p)):
                return
            for desk in self.desks:
                desk.apply(w)

    def _complete_some(self) -> bool:
        moved = False
        for i, e in enumerate(self.engines):
            while e.held and all(e.held[0].end in d.applied for d in self.desks):
                w = e.held[0].end
                self._take(i, e.complete_window(w, self._figures_for(e.held[0].mine.sent, w)))
                self.completed += 1
                moved = True
        oldest = min((e.held[0].end if e.held else np.inf) for e in self.engines)
        for desk in self.desks:  # every engine has these figures now
            for w in [w for w in desk.applied if w < oldest]:
                del desk.applied[w]
        return moved

    def _figures_for(self, m: Memberships, w: float) -> dict[KeyRef, KeyFigures]:
        to = owner_of(m.kind, m.code, self.k).tolist()
        back = {}
        for ref, o in zip(zip(m.kind.tolist(), m.code.tolist(), strict=True), to, strict=True):
            f = self.desks[o].applied[w].get(ref)
            if f is not None:
                back[ref] = f
        return back

    # ---- restore -------------------------------------------------------------------
    def restore(self) -> None:
        """Every engine and desk rebuilt from its state, through the checkpoint codec."""
        if self.journal:  # the checkpoints of the last feed
            saved = [checkpoint.read(t, "t", i) for i, t in enumerate(self.tables)]
        else:
            saved = [(decode_state(encode_state(e.state_dict())), None, []) for e in self.engines]
        desks = [pickle.loads(pickle.dumps(d.state_dict())) for d in self.desks]
        watermark = self.engines[0].source_watermark
        self.engines = [self._new_engine() for _ in range(self.p)]
        for d, s in zip(self.desks, desks, strict=True):
            d.load_state_dict(s)
        for i, (e, (s, _, journal)) in enumerate(zip(self.engines, saved, strict=True)):
            self.restored_without_events += sum(h.ev is None for h in s["exchange"]["held"])
            e.load_state_dict(s)
            e.restore_pending(journal)
            self._take(i, e.set_source_watermark(watermark))  # re-sends its held requests

    @property
    def duplicates(self) -> int:
        return sum(d.duplicates for d in self.desks)


def read_lines(path: str) -> list[bytes]:
    with open(path, "rb") as fh:
        return [ln for ln in gzip.decompress(fh.read()).split(b"\n") if ln]


def run_whole(lines: list[bytes], config: VigilConfig | None = None) -> list[Alert]:
    eng = Engine(config or VigilConfig())
    alerts: list[Alert] = []
    for i in range(0, len(lines), BATCH):
        alerts += eng.process_lines(lines[i : i + BATCH]).alerts
    return alerts + eng.flush().alerts


def run_split(lines: list[bytes], restore_at: int = -1, **kw: Any) -> Split:
    split = Split(**kw)
    for n, i in enumerate(range(0, len(lines), BATCH)):
        if n == restore_at:  # with windows applied by the owners, not yet completed
            split.feed(lines[i : i + BATCH], complete=False)
            split.restore()
            split.pump()
            continue
        split.feed(lines[i : i + BATCH])
    split.flush()
    return split


def by_category(alerts: list[Alert]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        out[a.category].add(a.account_id)
    return out


def main(path: str) -> None:
    lines = read_lines(path)
    whole, split = by_category(run_whole(lines)), by_category(run_split(lines).alerts)
    print(f"{'category':22s} {'whole':>6s} {'split':>6s} {'both':>6s}")
    for c in sorted(set(whole) | set(split)):
        w, s = whole.get(c, set()), split.get(c, set())
        print(f"{c:22s} {len(w):6d} {len(s):6d} {len(w & s):6d}")
    wa, sa = set().union(*whole.values()), set().union(*split.values())
    print(f"{'accounts':22s} {len(wa):6d} {len(sa):6d} {len(wa & sa):6d}")


if __name__ == "__main__":
    main(sys.argv[1])
