"""The file sinks (streams/runtime/sinks.py)."""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.contract.reference import DeadLetter
from streams.runtime.sinks import DeadLetterFile


def test_a_dead_letter_keeps_at_most_max_raw_bytes_of_its_line_and_says_so(
    tmp_path: Path,
) -> None:
    """Regression: a 200 MB line of NUL bytes became a 1.2 GB dead-letter record."""
    sink = DeadLetterFile(tmp_path / "dl.jsonl", max_raw_bytes=100)
    sink.dead_letter(DeadLetter(b"\x00" * 1000, "too_large", "1000 bytes > 64"))
    sink.dead_letter(DeadLetter(b'{"a": 1}', "missing_field", "event_id"))
    sink.close()
    big, small = (orjson.loads(x) for x in (tmp_path / "dl.jsonl").read_bytes().splitlines())
    assert big["raw"] == "\x00" * 100 and big["truncated"] is True and big["raw_bytes"] == 1000
    assert big["reason"] == "too_large" and big["detail"] == "1000 bytes > 64"
    assert small == {"reason": "missing_field", "detail": "event_id", "raw": '{"a": 1}'}
