"""Issue 19, findings 1 and 3: every line that breaks the contract is dead-lettered with its
reason, whatever its shape; depth, width and identifier lengths are part of the contract.

Regressions: a 2 KB line nested 1,000 deep made the reference decoder raise RecursionError
past decode_lines (replay exited with a traceback, the worker re-ran the batch line by
line); identifiers of any length were accepted and kept for days.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.contract.events import decode_lines
from streams.contract.reference import MAX_DEPTH, MAX_ID_BYTES, MAX_MEMBERS, MAX_UA_BYTES
from streams.engine.engine import Engine
from tests.events_util import T0, line
from tests.unit.contract.test_decoder_parity import assert_same

NOW = T0 + 3600
HEAD = b'{"event_id":"e","ts":1790812800,"account_id":"a","endpoint":"x",'


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    """A line whose deepest value sits in `depth` containers, the event object included."""
    inner = depth - 1
    if open_ == b"{":
        return HEAD + b'"meta":' + b'{"k":' * inner + b"1" + b"}" * inner + b"}"
    return HEAD + b'"meta":' + open_ * inner + close * inner + b"}"


DEEP = [
    (nested(MAX_DEPTH + 1), "too_deep"),
    (nested(MAX_DEPTH + 1, b"{", b"}"), "too_deep"),
    (nested(1_000), "too_deep"),  # the line of the finding
    (nested(5_000), "too_deep"),  # past the JSON parser's own depth limit
    (b"[" * 3000 + b"]" * 3000, "too_deep"),
    (b'{"meta":' + b"[" * 2000, "too_deep"),  # deep and unterminated
    (HEAD + b'"moderation":{"h":' + b"[" * 40 + b"]" * 40 + b"}}", "too_deep"),
    (HEAD + b'"meta":[' + b",".join([b"1"] * (MAX_MEMBERS + 1)) + b"]}", "too_wide"),
    (
        HEAD + b'"meta":{' + b",".join(b'"k%d":1' % i for i in range(MAX_MEMBERS + 1)) + b"}}",
        "too_wide",
    ),
    (HEAD + b",".join(b'"k%d":1' % i for i in range(MAX_MEMBERS)) + b"}", "too_wide"),
]


@pytest.mark.parametrize(("raw", "reason"), DEEP, ids=[f"{r}-{i}" for i, (_, r) in enumerate(DEEP)])
def test_deep_and_wide_lines_are_dead_lettered(raw: bytes, reason: str) -> None:
    batch, dead = decode_lines([line(), raw, line()], now_ts=NOW)
    assert len(batch) == 2, "the good events around it are kept"
    assert [(d.reason, d.raw) for d in dead] == [(reason, raw)]
    assert_same([line(), raw, line()])


def test_limits_are_inclusive() -> None:
    """At the limits a line is still accepted, by both paths."""
    ok = [
        nested(MAX_DEPTH),
        nested(MAX_DEPTH, b"{", b"}"),
        HEAD + b'"meta":[' + b",".join([b"1"] * MAX_MEMBERS) + b"]}",
        line(account_id="a" * MAX_ID_BYTES, user_agent="u" * MAX_UA_BYTES),
        line(event_id="\u00e9" * (MAX_ID_BYTES // 2)),
    ]
    batch, dead = decode_lines(ok, now_ts=NOW)
    assert dead == [] and len(batch) == len(ok)
    assert_same(ok)


LONG = [
    line(account_id="a" * (MAX_ID_BYTES + 1)),
    line(event_id="e" * (MAX_ID_BYTES + 1)),
    line(api_key_id="k" * (MAX_ID_BYTES + 1)),
    line(model="m" * (MAX_ID_BYTES + 1), ip="1.2.3.4"),
    line(ip="9" * (MAX_ID_BYTES + 1)),
    line(prompt_hash="f" * (MAX_ID_BYTES + 1)),
    line(user_agent="u" * (MAX_UA_BYTES + 1)),
    line(account_id="\u00e9" * (MAX_ID_BYTES // 2 + 1)),  # 258 UTF-8 bytes, 129 characters
    HEAD.replace(b'"account_id":"a"', b'"account_id":"' + b"\\u0061" * (MAX_ID_BYTES + 1) + b'"')
    + b'"x":1}',
]


@pytest.mark.parametrize("raw", LONG, ids=range(len(LONG)))
def test_long_identifiers_are_dead_lettered(raw: bytes) -> None:
    batch, dead = decode_lines([line(), raw], now_ts=NOW)
    assert len(batch) == 1
    assert [d.reason for d in dead] == ["too_long"] and "UTF-8 bytes" in dead[0].detail
    assert_same([line(), raw])


def test_a_deep_line_does_not_stop_the_engine() -> None:
    """The engine takes the batch as usual: one dead letter, no processing error."""
    engine = Engine()
    lines = [line(event_id=f"e{i}", ts=T0 + i) for i in range(50)]
    lines.insert(20, nested(1_000))
    out = engine.process_lines(lines)
    assert [d.reason for d in out.dead_letters] == ["too_deep"]
    assert sum(len(b) for b in engine.pending) == 50


def test_replay_dead_letters_a_deep_line(tmp_path: Path) -> None:
    """Regression: `vigil replay` exited 1 with a traceback and empty output files."""
    data = b"\n".join([line(event_id="a"), nested(1_000), line(event_id="b")]) + b"\n"
    dead = tmp_path / "dead.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "streams", "replay", "-", "--dead-letters", str(dead)],
        input=data,
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert [orjson.loads(x)["reason"] for x in dead.read_bytes().splitlines()] == ["too_deep"]
