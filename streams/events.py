"""The input contract: decode raw JSON lines into a columnar batch, or dead-letter them.

Decoding is the hottest path in Vigil, so it does one pass per line with plain type checks
and defers all arithmetic to numpy on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec
import numpy as np
import orjson

MAX_LINE_BYTES = 65_536
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})

# Reasons an event is rejected; a closed set so metrics stay bounded.
REJECT_REASONS = (
    "too_large",
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "negative_tokens",
    "bad_timestamp",
    "future_timestamp",
    "too_late",
    "processing_error",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    reason: str
    detail: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "reason": self.reason,
                "detail": self.detail,
                "raw": self.raw.decode("utf-8", "backslashreplace"),
            }
        )


class Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


COLUMNS = (
    "event_id",
    "ts",
    "account_id",
    "endpoint",
    "api_key_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "status",
    "latency_ms",
    "ip",
    "country",
    "user_agent",
    "plan",
    "account_created",
    "flagged",
    "moderation",
    "finish_reason",
    "prompt_hash",
)


@dataclass
class EventBatch:
    """Accepted events, one numpy column per field. Missing optional strings are ''."""

    event_id: np.ndarray
    ts: np.ndarray
    account_id: np.ndarray
    endpoint: np.ndarray
    api_key_id: np.ndarray
    model: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    status: np.ndarray
    latency_ms: np.ndarray
    ip: np.ndarray
    country: np.ndarray
    user_agent: np.ndarray
    plan: np.ndarray
    account_created: np.ndarray
    flagged: np.ndarray
    moderation: np.ndarray  # highest category score, NaN when absent
    finish_reason: np.ndarray
    prompt_hash: np.ndarray
    raw: np.ndarray | None = None  # object array of the lines, to dead-letter an event later

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> EventBatch:
        cols = {c: getattr(self, c)[idx] for c in COLUMNS}
        return EventBatch(**cols, raw=self.raw[idx] if self.raw is not None else None)

    def slice(self, a: int, b: int) -> EventBatch:
        """Rows a..b as views, without copying columns."""
        cols = {c: getattr(self, c)[a:b] for c in COLUMNS}
        return EventBatch(**cols, raw=self.raw[a:b] if self.raw is not None else None)

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        if len(batches) == 1:
            return batches[0]
        cols = {c: np.concatenate([getattr(b, c) for b in batches]) for c in COLUMNS}
        raws = [b.raw for b in batches]
        raw = None if any(r is None for r in raws) else np.concatenate(raws)
        return EventBatch(**cols, raw=raw)


_OBJ_COLS = ("event_id", "account_id", "endpoint", "api_key_id", "model", "ip", "country")
_OBJ_COLS2 = ("user_agent", "plan", "finish_reason", "prompt_hash")


def empty_batch() -> EventBatch:
    return _build([], [])


def _parse_ts(v: object, field: str) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v)  # type: ignore[arg-type]
    if t is str:
        try:
            d = datetime.fromisoformat(v)  # type: ignore[arg-type]
        except ValueError:
            raise Reject("bad_timestamp", f"{field}: {v!r} is not RFC 3339") from None
        if d.tzinfo is None:
            raise Reject("bad_timestamp", f"{field}: {v!r} has no time zone")
        return d.timestamp()
    raise Reject("bad_timestamp" if field == "ts" else "wrong_type", f"{field}: not a timestamp")


def _opt_str(d: dict, key: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if type(v) is not str:
        raise Reject("wrong_type", f"{key}: expected a string, got {type(v).__name__}")
    return v


def _opt_int(d: dict, key: str, default: int) -> int:
    v = d.get(key)
    if v is None:
        return default
    if type(v) is not int:
        raise Reject("wrong_type", f"{key}: expected an integer, got {type(v).__name__}")
    return v


def _decode_one(line: bytes, max_future_ts: float) -> tuple:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("invalid_utf8", "line is not valid UTF-8") from None
        raise Reject("malformed_json", str(exc)) from None
    if type(d) is not dict:
        raise Reject("not_an_object", f"expected a JSON object, got {type(d).__name__}")
    for key in ("event_id", "ts", "account_id", "endpoint"):
        if key not in d or d[key] is None:
            raise Reject("missing_field", f"{key} is required")
    eid, acct, endpoint = d["event_id"], d["account_id"], d["endpoint"]
    if type(eid) is not str or type(acct) is not str or type(endpoint) is not str:
        bad = next(k for k in ("event_id", "account_id", "endpoint") if type(d[k]) is not str)
        raise Reject("wrong_type", f"{bad}: expected a string, got {type(d[bad]).__name__}")
    if not eid or not acct:
        raise Reject("missing_field", "event_id and account_id must not be empty")
    ts = _parse_ts(d["ts"], "ts")
    if ts != ts or ts > max_future_ts:
        raise Reject("future_timestamp", f"ts {d['ts']!r} is more than allowed in the future")
    pt = _opt_int(d, "prompt_tokens", 0)
    ct = _opt_int(d, "completion_tokens", 0)
    if pt < 0 or ct < 0:
        raise Reject("negative_tokens", f"tokens must be >= 0 (prompt {pt}, completion {ct})")
    status = _opt_int(d, "status", 200)
    lat = d.get("latency_ms")
    if lat is None:
        lat = np.nan
    elif type(lat) is not int and type(lat) is not float:
        raise Reject("wrong_type", "latency_ms: expected a number")
    created = d.get("account_created")
    created = np.nan if created is None else _parse_ts(created, "account_created")
    flagged = d.get("flagged", False)
    if type(flagged) is not bool:
        if flagged is not None:
            raise Reject("wrong_type", "flagged: expected a boolean")
        flagged = False
    mod = d.get("moderation")
    if mod is None:
        mod_max = np.nan
    else:
        if type(mod) is not dict:
            raise Reject("wrong_type", "moderation: expected an object of scores")
        vals = mod.values()
        if not all(type(x) is float or type(x) is int for x in vals):
            raise Reject("wrong_type", "moderation: scores must be numbers")
        mod_max = float(max(vals)) if vals else np.nan
    finish = _opt_str(d, "finish_reason")
    return (
        eid,
        ts,
        acct,
        endpoint,
        _opt_str(d, "api_key_id"),
        _opt_str(d, "model"),
        pt,
        ct,
        status,
        lat,
        _opt_str(d, "ip"),
        _opt_str(d, "country"),
        _opt_str(d, "user_agent"),
        _opt_str(d, "plan"),
        created,
        flagged,
        mod_max,
        finish,
        _opt_str(d, "prompt_hash"),
    )


class _Event(msgspec.Struct, gc=False):
    """The contract as a msgspec type: the C decoder checks types and required fields.

    Optional fields carry their defaults here so the fast path needs no None checks; an
    explicit JSON null goes to the slow path, which treats it as absent.
    """

    event_id: Annotated[str, msgspec.Meta(min_length=1)]
    ts: Annotated[datetime, msgspec.Meta(tz=True)] | float
    account_id: Annotated[str, msgspec.Meta(min_length=1)]
    endpoint: str
    api_key_id: str = ""
    model: str = ""
    prompt_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    completion_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    status: int = 200
    latency_ms: float = float("nan")
    ip: str = ""
    country: str = ""
    user_agent: str = ""
    plan: str = ""
    # Kept as given: it repeats for every event of an account, so it is parsed once per value.
    account_created: str | float | None = None
    flagged: bool = False
    moderation: dict[str, float] | None = None
    finish_reason: str = ""
    prompt_hash: str = ""


_LIST_DECODER = msgspec.json.Decoder(list[_Event])
_CREATED: dict[str | float | None, float] = {}


def _created(values: list) -> list[float]:
    cache = _CREATED
    if len(cache) > 500_000:
        cache.clear()
    out = []
    for v in values:
        t = cache.get(v)
        if t is None:
            t = cache[v] = np.nan if v is None else _parse_ts(v, "account_created")
        out.append(t)
    return out


def _columns(es: list[_Event]) -> dict[str, list]:
    """Columns straight from the decoded structs, one comprehension per field."""
    dt = datetime
    return {
        "event_id": [e.event_id for e in es],
        "ts": [e.ts.timestamp() if type(e.ts) is dt else e.ts for e in es],
        "account_id": [e.account_id for e in es],
        "endpoint": [e.endpoint for e in es],
        "api_key_id": [e.api_key_id for e in es],
        "model": [e.model for e in es],
        "prompt_tokens": [e.prompt_tokens for e in es],
        "completion_tokens": [e.completion_tokens for e in es],
        "status": [e.status for e in es],
        "latency_ms": [e.latency_ms for e in es],
        "ip": [e.ip for e in es],
        "country": [e.country for e in es],
        "user_agent": [e.user_agent for e in es],
        "plan": [e.plan for e in es],
        "account_created": _created([e.account_created for e in es]),
        "flagged": [e.flagged for e in es],
        "moderation": [max(e.moderation.values()) if e.moderation else np.nan for e in es],
        "finish_reason": [e.finish_reason for e in es],
        "prompt_hash": [e.prompt_hash for e in es],
    }


def _decode_split(
    lines: list[bytes], out: list[_Event], raws: list[bytes], dead: list[DeadLetter]
) -> None:
    """Decode lines in one call; if any is bad, bisect so only bad lines go one by one."""
    if not lines:
        return
    try:
        out.extend(_LIST_DECODER.decode(b"[" + b",".join(lines) + b"]"))
        raws.extend(lines)
        return
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        if len(lines) > 1:
            mid = len(lines) // 2
            _decode_split(lines[:mid], out, raws, dead)
            _decode_split(lines[mid:], out, raws, dead)
            return
    ln = lines[0]
    try:
        _decode_one(ln, np.inf)
        # Valid by the contract but not by the fast decoder: explicit nulls for optional
        # fields, or an account_created the cache parses. Drop the nulls and convert.
        d = {k: v for k, v in orjson.loads(ln).items() if v is not None}
        out.append(msgspec.convert(d, _Event, strict=False))
        raws.append(ln)
    except Reject as r:
        dead.append(DeadLetter(ln, r.reason, r.detail))
    except msgspec.ValidationError as exc:
        dead.append(DeadLetter(ln, "wrong_type", str(exc)))


def decode_lines(
    lines: list[bytes],
    now_ts: float,
    max_future_s: float = 86_400,
    max_line_bytes: int = MAX_LINE_BYTES,
    keep_raw: bool = False,
) -> tuple[EventBatch, list[DeadLetter]]:
    """Decode a batch of raw lines. `now_ts` bounds how far in the future ts may be.

    Fast path: the whole batch in one msgspec call. If any line breaks the contract, each
    line is decoded on its own and the failures are re-read by `_decode_one`, whose reasons
    are what the dead-letter sink records.
    """
    dead: list[DeadLetter] = []
    # An empty record would vanish inside the joined array ("[a,]" bisects to "[]"), so
    # empty and oversized lines are set aside before decoding.
    good = [ln for ln in lines if len(ln) <= max_line_bytes and ln.strip()]
    if len(good) != len(lines):
        for ln in lines:
            if len(ln) > max_line_bytes:
                dead.append(DeadLetter(ln, "too_large", f"{len(ln)} bytes > {max_line_bytes}"))
            elif not ln.strip():
                dead.append(DeadLetter(ln, "malformed_json", "empty record"))
    decoded: list[_Event] = []
    raws: list[bytes] = []
    _decode_split(good, decoded, raws, dead)
    cols = _columns(decoded)
    batch = _from_columns([cols[c] for c in COLUMNS], raws if keep_raw else None)
    future = batch.ts > now_ts + max_future_s
    if future.any():
        for i in np.flatnonzero(future):
            ln = raws[i]
            dead.append(
                DeadLetter(
                    ln,
                    "future_timestamp",
                    f"ts {batch.ts[i]:.0f} is over {max_future_s:.0f} s ahead",
                )
            )
        keep = np.flatnonzero(~future)
        batch = batch.take(keep)
    return batch, dead


def _object_array(items: list) -> np.ndarray:
    # np.array would try to make a bytes array of a list of bytes; this keeps the objects.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _build(rows: list[tuple], raws: list[bytes] | None) -> EventBatch:
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    return _from_columns(cols, raws)


def _from_columns(cols: list, raws: list[bytes] | None) -> EventBatch:
    c = dict(zip(COLUMNS, cols, strict=True))
    obj = {k: np.array(c[k], dtype=object) for k in _OBJ_COLS + _OBJ_COLS2}
    return EventBatch(
        ts=np.array(c["ts"], dtype=np.float64),
        prompt_tokens=np.array(c["prompt_tokens"], dtype=np.int64),
        completion_tokens=np.array(c["completion_tokens"], dtype=np.int64),
        status=np.array(c["status"], dtype=np.int32),
        latency_ms=np.array(c["latency_ms"], dtype=np.float64),
        account_created=np.array(c["account_created"], dtype=np.float64),
        flagged=np.array(c["flagged"], dtype=bool),
        moderation=np.array(c["moderation"], dtype=np.float64),
        raw=_object_array(raws) if raws is not None else None,
        **obj,
    )
