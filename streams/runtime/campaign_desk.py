"""The owner side of the campaign exchange, and the engine side's inbox of figures.

Engines on partitions close a window in two phases (streams/engine/exchange.py): their
memberships of the window go to the owners of the keys, an owner applies the window once
every source has sent its memberships of it or passed it with none, and the figures go
back. A `Desk` is one owner and what the sources sent it; `Answers` is one engine's
figures received so far, by window and owner. Both are plain state: the Kafka worker
(streams/kafka/campaign.py) and the transport-free driver of the tests move the records.

The owner of a key is murmur2 of the kind's name and the key's 8 bytes, modulo the
owners: every runner with the same count places keys alike.

Figures of applied windows stay in the desk until every source has reported (from its
last checkpoint) that it completed past them: a source restored from a checkpoint re-sends
the requests of the windows it holds, and gets their figures again, not recomputed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streams.features.campaign_index import KINDS
from streams.features.campaign_split import (
    KeyFigures,
    KeyOwner,
    KeyRef,
    Memberships,
    with_figures,
)

_KIND_BYTES = [k.encode() for k in KINDS]

# (source or owner partition, window end, figures): an answer to send.
Answer = tuple[int, float, dict[KeyRef, KeyFigures]]


def owner_of(kind: np.ndarray, code: np.ndarray, k: int) -> np.ndarray:
    """The owner of each (kind, key): murmur2 of the kind's name and the key's 8 bytes.

    Hashed a kind at a time with numpy (`murmur2_rows`): one aiokafka `murmur2` call per
    key took about a third of a worker's main thread on bench_kafka's corpus."""
    out = np.empty(len(kind), dtype=np.int64)
    kind = np.asarray(kind)
    codes = np.ascontiguousarray(np.asarray(code).astype(">u8"))
    for i, name in enumerate(_KIND_BYTES):
        rows = np.flatnonzero(kind == i)
        if len(rows) == 0:
            continue
        keys = np.empty((len(rows), len(name) + 8), dtype=np.uint8)
        keys[:, : len(name)] = np.frombuffer(name, dtype=np.uint8)
        keys[:, len(name) :] = codes[rows].view(np.uint8).reshape(-1, 8)
        out[rows] = (murmur2_rows(keys) & 0x7FFFFFFF) % k
    return out


def murmur2_rows(keys: np.ndarray) -> np.ndarray:
    """Kafka's murmur2 (aiokafka.partitioner.murmur2) of each row of a uint8 array, all rows
    of one length; int64 results, as aiokafka's."""
    n, length = keys.shape
    m, r = np.uint32(0x5BD1E995), np.uint32(24)
    h = np.full(n, 0x9747B28C ^ length, dtype=np.uint32)
    with np.errstate(over="ignore"):  # uint32 products wrap, as the & 0xFFFFFFFF does
        for i in range(0, length - length % 4, 4):
            k = keys[:, i : i + 4].copy().view("<u4").ravel()
            k = k * m
            k ^= k >> r
            k = k * m
            h = (h * m) ^ k
        tail = keys[:, length - length % 4 :].astype(np.uint32)
        extra = length % 4
        if extra >= 3:
            h ^= tail[:, 2] << np.uint32(16)
        if extra >= 2:
            h ^= tail[:, 1] << np.uint32(8)
        if extra >= 1:
            h ^= tail[:, 0]
            h = h * m
        h ^= h >> np.uint32(13)
        h = h * m
        h ^= h >> np.uint32(15)
    return h.astype(np.int64)


def figures_for(figures: dict[KeyRef, KeyFigures], m: Memberships) -> dict[KeyRef, KeyFigures]:
    """The figures of the keys in `m` (a source's request): what that source is sent."""
    if not figures or not len(m):
        return {}
    rows = np.flatnonzero(with_figures(m.code, figures))
    refs = zip(m.kind[rows].tolist(), m.code[rows].tolist(), strict=True)
    return {r: figures[r] for r in refs if r in figures}


class Desk:
    """One owner of keys and what the sources sent it: memberships by (window, source)
    until the window is applied, then the figures, until every source completed past it.

    `sources` is the number of source partitions; 0 leaves readiness to the caller (the
    driver decides with its engines' progress itself)."""

    def __init__(self, horizon_s: float, max_keys: int, sources: int = 0) -> None:
        self.owner = KeyOwner(horizon_s, max_keys)
        self.sources = sources
        self.inbox: dict[tuple[float, int], Memberships] = {}
        self.applied: dict[float, dict[KeyRef, KeyFigures]] = {}
        self.applied_until = -math.inf  # the newest window applied
        self.passed: dict[int, float] = {}  # source -> every request up to here was sent
        self.done: dict[int, float] = {}  # source -> every window before this completed
        self.duplicates = 0  # requests seen again (a restored engine re-emits its own)
        self.stale = 0  # requests for windows applied and dropped: nobody can use them

    def receive(self, window_end: float, source: int, part: Memberships) -> None:
        if window_end in self.applied or (window_end, source) in self.inbox:
            self.duplicates += 1
            return
        self.inbox[(window_end, source)] = part

    def apply(self, window_end: float) -> dict[KeyRef, KeyFigures]:
        keys = sorted(k for k in self.inbox if k[0] == window_end)
        parts = [self.inbox.pop(k) for k in keys]
        figures = self.owner.apply(window_end, parts)
        self.applied[window_end] = figures
        self.applied_until = max(self.applied_until, window_end)
        return figures

    # ---- with `sources`: the desk decides when a window is ready ------------------
    def request(self, window_end: float, source: int, part: Memberships) -> list[Answer]:
        """A source's memberships of a window; the answers now due (to that source again
        when the window was applied already)."""
        if window_end in self.applied:
            self.duplicates += 1
            return [(source, window_end, figures_for(self.applied[window_end], part))]
        if window_end <= self.applied_until:
            self.stale += 1  # its figures were dropped once every source was past them
            return []
        self.receive(window_end, source, part)
        return self.apply_ready()

    def progress(self, source: int, passed: float, done: float) -> list[Answer]:
        """A source's progress: requests sent up to `passed`, windows completed before
        `done` (as of its last checkpoint)."""
        self.passed[source] = max(self.passed.get(source, -math.inf), passed)
        self.done[source] = max(self.done.get(source, -math.inf), done)
        oldest = min(self.done.get(s, -math.inf) for s in range(self.sources))
        for w in [w for w in self.applied if w < oldest]:
            del self.applied[w]
        return self.apply_ready()

    def apply_ready(self) -> list[Answer]:
        """Apply, oldest first, every window that each source has sent or passed."""
        answers: list[Answer] = []
        while self.inbox:
            w = min(k[0] for k in self.inbox)
            parts = {s: m for (ww, s), m in self.inbox.items() if ww == w}
            if any(
                s not in parts and self.passed.get(s, -math.inf) < w for s in range(self.sources)
            ):
                break
            figures = self.apply(w)
            for s in range(self.sources):
                m = parts.get(s)
                answers.append((s, w, figures_for(figures, m) if m is not None else {}))
        return answers

    def state_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner.state_dict(),
            "inbox": self.inbox,
            "applied": self.applied,
            "applied_until": self.applied_until,
            "passed": self.passed,
            "done": self.done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.owner.load_state_dict(state["owner"])
        self.inbox, self.applied = dict(state["inbox"]), dict(state["applied"])
        self.applied_until = state.get("applied_until", max(self.applied, default=-math.inf))
        self.passed = dict(state.get("passed", {}))
        self.done = dict(state.get("done", {}))


class Answers:
    """One engine's figures received, by window and owner, until the window completes."""

    def __init__(self, owners: int) -> None:
        self.owners = owners
        self.got: dict[float, dict[int, dict[KeyRef, KeyFigures]]] = {}

    def add(self, owner: int, window_end: float, figures: dict[KeyRef, KeyFigures]) -> None:
        self.got.setdefault(window_end, {})[owner] = figures

    def complete(self, window_end: float) -> dict[KeyRef, KeyFigures] | None:
        """Every owner's figures of the window, merged, once all have answered."""
        got = self.got.get(window_end, {})
        if len(got) < self.owners:
            return None
        merged: dict[KeyRef, KeyFigures] = {}
        for figures in got.values():
            merged.update(figures)
        return merged

    def drop_until(self, window_end: float) -> None:
        for w in [w for w in self.got if w <= window_end]:
            del self.got[w]

    def state_dict(self) -> dict[str, Any]:
        return {"got": self.got}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.got = dict(state["got"])
