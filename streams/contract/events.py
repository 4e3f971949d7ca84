"""Raw JSON lines in, a columnar batch of accepted events and the dead letters out.

Decoding is the hottest path in Vigil. The compiled decoder (`streams/contract/_decode.c`) turns a
whole batch into numeric columns in one call: every string field becomes a 64-bit keyed
code, the same in every process given the same key, so no Python object is made per
field. The few lines it cannot take exactly go one by one through the reference decoder
in `streams/contract/reference.py`, which also gives every reject its reason. The strings behind the codes are read back from the
raw lines only where a person will see them (reasons, campaign evidence, snapshots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import msgspec
import numpy as np
import orjson

from streams.contract import _decode
from streams.contract.codes import subnet_of
from streams.contract.reference import (
    REJECT_REASONS,
    DeadLetter,
    Reject,
    decode_event,
    row,
)

__all__ = [
    "REJECT_REASONS",
    "DeadLetter",
    "EventBatch",
    "column_arrays",
    "decode_lines",
    "line_texts",
    "take_columns",
]

MAX_LINE_BYTES = 65_536
# Block layout of the compiled decoder's output (the enums at the top of _decode.c).
CODE_COLUMNS = (
    "event_id",
    "account_id",
    "endpoint",
    "api_key_id",
    "model",
    "ip",
    "subnet",
    "country",
    "user_agent",
    "prompt_hash",
    "account_check",
)
FLOAT_COLUMNS = ("ts", "latency_ms", "account_created", "moderation")
INT_COLUMNS = ("prompt_tokens", "completion_tokens", "status")
SMALL_COLUMNS = ("flagged", "plan", "finish_reason")
_OK, _SLOW, _TOO_LARGE, _EMPTY = range(4)
# Columns whose codes stand for strings a person may need to read back.
TEXT_FIELDS = frozenset(CODE_COLUMNS) - {"subnet", "account_check"}


@dataclass
class EventBatch:
    """Accepted events, one numpy column per field.

    String fields hold 64-bit keyed codes (0 when absent), `subnet` the code of the IP's
    /24 or /48 block, `plan` and `finish_reason` the small codes of contract.PLAN_CODES
    and FINISH_CODES, and `raw` the original lines, from which `texts` reads strings back.
    """

    event_id: np.ndarray
    account_id: np.ndarray
    endpoint: np.ndarray
    api_key_id: np.ndarray
    model: np.ndarray
    ip: np.ndarray
    subnet: np.ndarray
    country: np.ndarray
    user_agent: np.ndarray
    prompt_hash: np.ndarray
    account_check: (
        np.ndarray
    )  # a second, independent code of account_id (streams/features/identity.py)
    ts: np.ndarray
    latency_ms: np.ndarray
    account_created: np.ndarray
    moderation: np.ndarray  # highest category score, NaN when absent
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    status: np.ndarray
    flagged: np.ndarray
    plan: np.ndarray
    finish_reason: np.ndarray
    raw: np.ndarray  # object array of the lines as read

    def __len__(self) -> int:
        return len(self.ts)

    def _map(self, fn) -> EventBatch:
        return EventBatch(**{c: fn(getattr(self, c)) for c in COLUMNS})

    def take(self, idx: np.ndarray) -> EventBatch:
        return self._map(lambda a: a[idx])

    def slice(self, a: int, b: int) -> EventBatch:
        """Rows a..b as views, without copying columns."""
        return self._map(lambda col: col[a:b])

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        if len(batches) == 1:
            return batches[0]
        return EventBatch(**{c: np.concatenate([getattr(b, c) for b in batches]) for c in COLUMNS})

    def raw_bytes(self) -> int:
        """The raw lines' lengths, summed."""
        return _decode.total_len(self.raw.tolist())

    def texts(self, idx: np.ndarray | list[int], field: str) -> list[str]:
        """The strings behind one code column at rows idx, read back from the raw lines."""
        lines = self.raw[np.asarray(idx, dtype=np.int64)].tolist()
        return line_texts(lines, list(range(len(lines))), field)


def _parsed_text(line: bytes, key: str) -> str:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        # orjson is stricter than the contract about a few escapes (lone surrogates).
        try:
            d = msgspec.structs.asdict(decode_event(line))
        except Reject:
            return ""
    v = d.get(key) if type(d) is dict else None
    return v if type(v) is str else ""


def line_texts(lines: list[bytes], rows: list[int], field: str) -> list[str]:
    """One string field of lines[rows]: "" where absent or not a string.

    The compiled scanner reads most lines; the rest (escapes, odd JSON) are parsed whole.
    `subnet` is the block of the line's IP.
    """
    key = "ip" if field == "subnet" else field
    if key not in TEXT_FIELDS:
        raise ValueError(f"{field} has no text")
    out = _decode.texts(lines, rows, key)
    if None in out:
        for i, v in enumerate(out):
            if v is None:
                out[i] = _parsed_text(lines[rows[i]], key)
    return [subnet_of(v) for v in out] if field == "subnet" else out


COLUMNS = tuple(f.name for f in fields(EventBatch))


def empty_batch() -> EventBatch:
    return decode_lines([], now_ts=0.0)[0]


def _object_array(items: list) -> np.ndarray:
    # np.array would try to make a bytes array of a list of bytes; this keeps the objects.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


_LAYOUT = (
    (np.uint64, len(CODE_COLUMNS)),
    (np.float64, len(FLOAT_COLUMNS)),
    (np.int64, len(INT_COLUMNS)),
    (np.uint8, len(SMALL_COLUMNS)),
)


def column_arrays(columns: tuple) -> tuple[np.ndarray, ...]:
    """What `_decode.decode` gave, read as arrays over its buffers (no copy): the status of
    each of the n lines, then the code, float, int and small blocks as (columns, n)."""
    status_b, *blocks = columns
    n = len(status_b)
    return (
        np.frombuffer(status_b, np.uint8),
        *(
            np.frombuffer(buf, dtype).reshape(k, n)
            for buf, (dtype, k) in zip(blocks, _LAYOUT, strict=True)
        ),
    )


def take_columns(columns: tuple, rows: Sequence[int]) -> tuple:
    """Some rows of what `_decode.decode(lines, limit)` gave, as it gives them for those
    lines alone: a Block split between engines keeps what the consumer thread decoded.
    Writable, as decode_lines fills in the rows the reference decoder reads."""
    idx = np.asarray(rows, np.intp)
    status, *blocks = column_arrays(columns)
    return (status[idx], *(block[:, idx].reshape(-1) for block in blocks))


def decode_lines(
    lines: list[bytes],
    now_ts: float,
    max_future_s: float = 86_400,
    max_line_bytes: int = MAX_LINE_BYTES,
    fast: bool = True,
    columns: tuple | None = None,
) -> tuple[EventBatch, list[DeadLetter]]:
    """Decode a batch of raw lines. `now_ts` bounds how far in the future ts may be.

    `fast=False` sends every line through the reference decoder; tests compare the two.
    `columns`: what `_decode.decode(lines, max_line_bytes)` gave for these lines, when
    another thread ran it (the Kafka worker's consumer thread, streams/kafka/fetch.py).
    """
    n = len(lines)
    if columns is None or len(columns[0]) != n:
        columns = _decode.decode(lines, max_line_bytes)
    status, codes, floats, ints, small = column_arrays(columns)
    if not fast:
        status = np.where(status == _OK, _SLOW, status).astype(np.uint8)
    dead: list[DeadLetter] = []
    keep = None
    if status.any():
        keep = np.ones(n, dtype=bool)
        for i in np.flatnonzero(status).tolist():
            ln = lines[i]
            s = status[i]
            if s == _TOO_LARGE:
                # A CutLine (replay's reader) is the head of a longer line.
                n = getattr(ln, "length", len(ln))
                dead.append(DeadLetter(ln, "too_large", f"{n} bytes > {max_line_bytes}"))
                keep[i] = False
                continue
            if s == _EMPTY:
                dead.append(DeadLetter(ln, "malformed_json", "empty record"))
                keep[i] = False
                continue
            try:
                c, f, k, m = row(decode_event(ln))
                codes[:, i], floats[:, i], ints[:, i], small[:, i] = c, f, k, m
            except Reject as r:
                dead.append(DeadLetter(ln, r.reason, r.detail))
                keep[i] = False
            except OverflowError:
                dead.append(DeadLetter(ln, "wrong_type", "an integer field is out of range"))
                keep[i] = False
            except Exception as exc:  # noqa: BLE001
                # No line may stop a batch, whatever it holds: a reference-decoder bug
                # would otherwise drop every event of it. The fuzz tests require that
                # this never happens (the detail says so when it does).
                dead.append(DeadLetter(ln, "malformed_json", f"undecodable: {exc!r}"))
                keep[i] = False
    # Before the Unix epoch no API event was made; far enough back (ts -1e20), window
    # arithmetic overflowed and the event was in no count at all.
    past = floats[0] < 0
    if past.any():
        for i in np.flatnonzero(past & (keep if keep is not None else True)).tolist():
            dead.append(
                DeadLetter(lines[i], "bad_timestamp", f"ts {floats[0, i]:.0f} is before 1970")
            )
        keep = ~past if keep is None else keep & ~past
    future = floats[0] > now_ts + max_future_s
    if future.any():
        for i in np.flatnonzero(future & (keep if keep is not None else True)).tolist():
            dead.append(
                DeadLetter(
                    lines[i],
                    "future_timestamp",
                    f"ts {floats[0, i]:.0f} is over {max_future_s:.0f} s ahead",
                )
            )
        keep = ~future if keep is None else keep & ~future
    cols: dict[str, np.ndarray] = {}
    for block, names in (
        (codes, CODE_COLUMNS),
        (floats, FLOAT_COLUMNS),
        (ints, INT_COLUMNS),
        (small, SMALL_COLUMNS),
    ):
        cols.update(zip(names, block, strict=True))
    cols["flagged"] = cols["flagged"].view(bool)
    cols["raw"] = _object_array(lines)
    batch = EventBatch(**cols)
    if keep is not None:
        batch = batch.take(np.flatnonzero(keep))
    return batch, dead
