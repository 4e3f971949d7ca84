"""The input contract, one line at a time: the reference decoder.

The compiled fast path (`streams/contract/_decode.c`) hands every line it cannot decode exactly to
this module: malformed or odd JSON, escapes, explicit nulls, unusual timestamps. Here a
line is either turned into one row of column values or rejected with the reason the
dead-letter sink records. Tests run both paths on the same lines and compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec
import numpy as np
import orjson

from streams.contract._decode import code
from streams.contract.codes import subnet_of

# Small codes the fast path writes too; a change here must be made in _decode.c as well.
PLAN_CODES = {"": 0, "free": 1, "payg": 2, "enterprise": 3}
FINISH_CODES = {"": 0, "stop": 1, "length": 2, "content_filter": 3, "tool_calls": 4}
FINISH_OTHER = 5

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


class Event(msgspec.Struct, gc=False):
    """The contract as a msgspec type: the C decoder checks types and required fields.

    Optional fields carry their defaults so a decoded event needs no None checks; an
    explicit JSON null is removed before conversion and so means absent.
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
    account_created: str | float | None = None
    flagged: bool = False
    moderation: dict[str, float] | None = None
    finish_reason: str = ""
    prompt_hash: str = ""


_DECODER = msgspec.json.Decoder(Event)


def parse_ts(v: object, field: str) -> float:
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


def _opt(d: dict, key: str, kind: type, default: object) -> object:
    v = d.get(key)
    if v is None:
        return default
    if type(v) is not kind:
        raise Reject("wrong_type", f"{key}: expected {kind.__name__}, got {type(v).__name__}")
    return v


def check(line: bytes) -> None:
    """Raise Reject, with the reason, if the line breaks the contract."""
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
    for key in ("event_id", "account_id", "endpoint"):
        if type(d[key]) is not str:
            raise Reject("wrong_type", f"{key}: expected a string, got {type(d[key]).__name__}")
    if not d["event_id"] or not d["account_id"]:
        raise Reject("missing_field", "event_id and account_id must not be empty")
    parse_ts(d["ts"], "ts")
    pt = _opt(d, "prompt_tokens", int, 0)
    ct = _opt(d, "completion_tokens", int, 0)
    if pt < 0 or ct < 0:  # type: ignore[operator]
        raise Reject("negative_tokens", f"tokens must be >= 0 (prompt {pt}, completion {ct})")
    _opt(d, "status", int, 200)
    lat = d.get("latency_ms")
    if lat is not None and type(lat) is not int and type(lat) is not float:
        raise Reject("wrong_type", "latency_ms: expected a number")
    if d.get("account_created") is not None:
        parse_ts(d["account_created"], "account_created")
    _opt(d, "flagged", bool, False)
    mod = d.get("moderation")
    if mod is not None:
        if type(mod) is not dict:
            raise Reject("wrong_type", "moderation: expected an object of scores")
        if not all(type(x) is float or type(x) is int for x in mod.values()):
            raise Reject("wrong_type", "moderation: scores must be numbers")
    for key in (
        "api_key_id",
        "model",
        "ip",
        "country",
        "user_agent",
        "plan",
        "finish_reason",
        "prompt_hash",
    ):
        _opt(d, key, str, "")


def decode_event(line: bytes) -> Event:
    """The line as an Event, or Reject with the reason."""
    try:
        return _DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        pass
    check(line)
    # Valid by the contract but not by the strict decoder: explicit nulls for optional
    # fields, or a timestamp form only datetime.fromisoformat reads. Drop nulls, convert.
    d = {k: v for k, v in orjson.loads(line).items() if v is not None}
    if isinstance(d.get("ts"), str):
        d["ts"] = parse_ts(d["ts"], "ts")
    try:
        return msgspec.convert(d, Event, strict=False)
    except msgspec.ValidationError as exc:
        raise Reject("wrong_type", str(exc)) from None


def row(e: Event) -> tuple[list[int], list[float], list[int], list[int]]:
    """One event's values in the fast path's column order (see events.CODE_COLUMNS...)."""
    ts = e.ts.timestamp() if type(e.ts) is datetime else float(e.ts)
    created = (
        np.nan if e.account_created is None else parse_ts(e.account_created, "account_created")
    )
    mod = max(e.moderation.values()) if e.moderation else np.nan
    codes = [
        code(e.event_id),
        code(e.account_id),
        code(e.endpoint),
        code(e.api_key_id),
        code(e.model),
        code(e.ip),
        code(subnet_of(e.ip)),
        code(e.country),
        code(e.user_agent),
        code(e.prompt_hash),
    ]
    floats = [ts, float(e.latency_ms), created, float(mod)]
    ints = [e.prompt_tokens, e.completion_tokens, e.status]
    small = [
        int(e.flagged),
        PLAN_CODES.get(e.plan, 0),
        FINISH_CODES.get(e.finish_reason, FINISH_OTHER),
    ]
    return codes, floats, ints, small
