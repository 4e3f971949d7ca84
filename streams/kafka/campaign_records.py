"""The campaign topic's records: JSON values, and requests and figures in numbered parts.

A window's request or figures grows with traffic: every prompt an engine saw is a row
(streams/features/campaign_split.py), and at a few thousand events a second one request
passes the 1 MB a producer sends in one record by default (Faust's
`producer_max_request_size`, the broker's `message.max.bytes`). The producer refuses such
a record, the batch fails and the worker stops, again on every restart. So a value over
`[worker] exchange_record_bytes` goes as several records of contiguous rows, each with its
index `i` and the count `n`; the receiver keeps the parts (in its checkpoint, `Parts`)
until it has all `n`, then joins them in order. A record without `i` and `n` is whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from streams.features.campaign_split import KeyFigures, KeyRef, Memberships


def encode_request(source: int, window_end: float, m: Memberships, i: int = 0, n: int = 1) -> bytes:
    return orjson.dumps(
        {
            "s": source,
            "w": window_end,
            "i": i,
            "n": n,
            "kind": m.kind.tolist(),
            "code": m.code.tolist(),
            "account": m.account.tolist(),
            "events": m.events.tolist(),
            "bad": m.bad.tolist(),
        }
    )


def decode_request(d: dict) -> tuple[int, float, Memberships]:
    w = float(d["w"])
    account = np.empty(len(d["account"]), object)
    account[:] = d["account"]
    m = Memberships(
        w,
        np.array(d["kind"], np.int8),
        np.array(d["code"], np.uint64),
        account,
        np.array(d["events"], np.int64),
        np.array(d["bad"], bool),
    )
    if not len(m.kind) == len(m.code) == len(m.account) == len(m.events) == len(m.bad):
        raise ValueError("memberships columns of different lengths")
    return int(d["s"]), w, m


def encode_figures(
    owner: int, window_end: float, figures: dict[KeyRef, KeyFigures], i: int = 0, n: int = 1
) -> bytes:
    rows = [[k, c, f.count, f.bad, f.accounts] for (k, c), f in figures.items()]
    return orjson.dumps({"o": owner, "w": window_end, "i": i, "n": n, "f": rows})


def decode_figures(d: dict) -> tuple[int, float, dict[KeyRef, KeyFigures]]:
    figures = {(int(k), int(c)): KeyFigures(int(n), int(b), list(a)) for k, c, n, b, a in d["f"]}
    return int(d["o"]), float(d["w"]), figures


def part_of(d: dict) -> tuple[int, int]:
    """(index, count) of a decoded record; a record from before parts is whole."""
    i, n = int(d.get("i", 0)), int(d.get("n", 1))
    if not 0 <= i < n:
        raise ValueError(f"part {i} of {n}")
    return i, n


def in_parts(rows: int, encode: Callable[[int, int, int, int], bytes], limit: int) -> list[bytes]:
    """Values of at most `limit` bytes that together hold rows [0, rows):
    `encode(lo, hi, i, n)` is part i of n, rows [lo, hi). The same rows and limit always
    give the same parts, so a re-sent request replaces parts already received.

    A single row over the limit still goes alone: rows are bounded (a figure names at most
    25 accounts), far below any limit the settings allow."""
    whole = encode(0, rows, 0, 1)
    if len(whole) <= limit or rows <= 1:
        return [whole]
    n = min(rows, -(-len(whole) // limit) + 1)  # one part more than the bytes need
    while True:
        bounds = np.linspace(0, rows, n + 1).round().astype(int).tolist()
        values = [encode(bounds[i], bounds[i + 1], i, n) for i in range(n)]
        if n >= rows or all(len(v) <= limit for v in values):
            return values
        n = min(rows, 2 * n)


class Parts:
    """Parts received of records not yet whole, by (kind, sender, window, count)."""

    def __init__(self) -> None:
        self.got: dict[tuple[bytes, int, float, int], dict[int, Any]] = {}

    def add(self, kind: bytes, sender: int, window_end: float, i: int, n: int, part: Any):
        """Every part in order once the last one comes, else None."""
        if n == 1:
            return [part]
        key = (kind, sender, window_end, n)
        got = self.got.setdefault(key, {})
        got[i] = part  # a re-sent part replaces its twin
        if len(got) < n:
            return None
        del self.got[key]
        return [got[j] for j in range(n)]

    def drop(self, kind: bytes, stale: Callable[[float], bool]) -> None:
        """Parts of `kind` for windows that no longer need them: `stale(window_end)`."""
        for key in [k for k in self.got if k[0] == kind and stale(k[2])]:
            del self.got[key]

    def state_dict(self) -> dict:
        return dict(self.got)

    def load_state_dict(self, state: dict) -> None:
        self.got = dict(state)


def join_figures(parts: list[dict[KeyRef, KeyFigures]]) -> dict[KeyRef, KeyFigures]:
    out: dict[KeyRef, KeyFigures] = {}
    for p in parts:
        out.update(p)
    return out


def request_values(source: int, window_end: float, m: Memberships, limit: int) -> list[bytes]:
    def encode(lo: int, hi: int, i: int, n: int) -> bytes:
        return encode_request(source, window_end, m.take(slice(lo, hi)), i, n)

    return in_parts(len(m), encode, limit)


def figures_values(
    owner: int, window_end: float, figures: dict[KeyRef, KeyFigures], limit: int
) -> list[bytes]:
    items = list(figures.items())

    def encode(lo: int, hi: int, i: int, n: int) -> bytes:
        return encode_figures(owner, window_end, dict(items[lo:hi]), i, n)

    return in_parts(len(items), encode, limit)
