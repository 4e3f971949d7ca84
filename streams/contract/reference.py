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

from streams.contract.codes import account_codes, code, subnet_of

# Small codes the fast path writes too; a change here must be made in _decode.c as well.
PLAN_CODES = {"": 0, "free": 1, "payg": 2, "enterprise": 3}
FINISH_CODES = {"": 0, "stop": 1, "length": 2, "content_filter": 3, "tool_calls": 4}
FINISH_OTHER = 5

# Limits of the contract (README, "Input contract"); _decode.c holds the same numbers.
MAX_DEPTH = 32  # nested objects and arrays, the event object included
MAX_MEMBERS = 1000  # members of one object or items of one array
MAX_ID_BYTES = 256  # UTF-8 bytes of every string field but user_agent
MAX_UA_BYTES = 1024
STRING_FIELDS = (
    "event_id",
    "account_id",
    "endpoint",
    "api_key_id",
    "model",
    "ip",
    "country",
    "user_agent",
    "plan",
    "finish_reason",
    "prompt_hash",
)

# Reasons an event is rejected; a closed set so metrics stay bounded.
REJECT_REASONS = (
    "too_large",
    "too_deep",
    "too_wide",
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "negative_tokens",
    "too_long",
    "bad_timestamp",
    "future_timestamp",
    "too_late",
    "processing_error",
    "corrupt_batch",  # a Kafka record batch that could not be read (the worker's reader)
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


def _shape(d: object) -> None:
    """Reject a parsed line nested deeper or wider than the contract allows.

    Iterative, so no depth of nesting can exhaust the interpreter's stack.
    """
    stack = [(d, 1)]
    while stack:
        v, level = stack.pop()
        if level > MAX_DEPTH:
            raise Reject("too_deep", f"nested over {MAX_DEPTH} levels")
        if len(v) > MAX_MEMBERS:
            kind = "an object" if type(v) is dict else "an array"
            raise Reject("too_wide", f"{kind} with {len(v)} members (limit {MAX_MEMBERS})")
        for x in v.values() if type(v) is dict else v:
            if type(x) is dict or type(x) is list:
                stack.append((x, level + 1))


def check_shape(line: bytes) -> None:
    """Reject the line if its nesting is deeper or wider than the contract allows.

    A line with few brackets and commas cannot break either limit: that is most lines,
    and counting is cheap. The others are parsed (the parser has its own depth limit,
    far above ours) and walked. A line that does not parse is left to `check`, which
    names what is wrong, unless its parser stopped at its own depth limit.
    """
    opens = line.count(b"[") + line.count(b"{")
    if opens <= MAX_DEPTH and line.count(b",") < MAX_MEMBERS:
        return
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) and _is_utf8(line):
            raise Reject("too_deep", f"nested over {MAX_DEPTH} levels") from None
        return
    if type(d) is dict or type(d) is list:
        _shape(d)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_lengths(e: Event) -> None:
    """Reject identifiers over their caps: they are kept in memory for days."""
    for key in STRING_FIELDS:
        v = getattr(e, key)
        cap = MAX_UA_BYTES if key == "user_agent" else MAX_ID_BYTES
        # A character is at most 4 UTF-8 bytes: only long strings need encoding.
        if len(v) * 4 > cap and len(v.encode("utf-8", "surrogatepass")) > cap:
            raise Reject("too_long", f"{key}: over {cap} UTF-8 bytes")


def decode_event(line: bytes) -> Event:
    """The line as an Event, or Reject with the reason."""
    check_shape(line)
    try:
        e = _DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        pass
    else:
        check_lengths(e)
        return e
    check(line)
    # Valid by the contract but not by the strict decoder: explicit nulls for optional
    # fields, or a timestamp form only datetime.fromisoformat reads. Drop nulls, convert.
    d = {k: v for k, v in orjson.loads(line).items() if v is not None}
    if isinstance(d.get("ts"), str):
        d["ts"] = parse_ts(d["ts"], "ts")
    try:
        e = msgspec.convert(d, Event, strict=False)
    except msgspec.ValidationError as exc:
        raise Reject("wrong_type", str(exc)) from None
    check_lengths(e)
    return e


def row(e: Event) -> tuple[list[int], list[float], list[int], list[int]]:
    """One event's values in the fast path's column order (see events.CODE_COLUMNS...)."""
    ts = e.ts.timestamp() if type(e.ts) is datetime else float(e.ts)
    created = (
        np.nan if e.account_created is None else parse_ts(e.account_created, "account_created")
    )
    mod = max(e.moderation.values()) if e.moderation else np.nan
    account, account_check = account_codes(e.account_id)
    codes = [
        code(e.event_id),
        account,
        code(e.endpoint),
        code(e.api_key_id),
        code(e.model),
        code(e.ip),
        code(subnet_of(e.ip)),
        code(e.country),
        code(e.user_agent),
        code(e.prompt_hash),
        account_check,
    ]
    floats = [ts, float(e.latency_ms), created, float(mod)]
    ints = [e.prompt_tokens, e.completion_tokens, e.status]
    small = [
        int(e.flagged),
        PLAN_CODES.get(e.plan, 0),
        FINISH_CODES.get(e.finish_reason, FINISH_OTHER),
    ]
    return codes, floats, ints, small
