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


def test_a_line_cut_on_reading_is_dead_lettered_with_its_whole_length(tmp_path: Path) -> None:
    from streams.core.config import VigilConfig
    from streams.engine.engine import Engine, build_detectors
    from streams.replay.reader import CutLine

    cfg = VigilConfig()
    # What the reader gives for a 5 MB line: its first max_line_bytes + 1 bytes.
    line = CutLine((b"[" + b"1," * cfg.engine.max_line_bytes)[: cfg.engine.max_line_bytes + 1])
    line.length = 5_000_000
    out = Engine(cfg, detectors=build_detectors(cfg, classifier=False)).process_lines([line])
    (dl,) = out.dead_letters
    assert dl.reason == "too_large" and dl.detail.startswith("5000000 bytes > ")
    sink = DeadLetterFile(tmp_path / "dl.jsonl")
    sink.write(out)
    sink.close()
    rec = orjson.loads((tmp_path / "dl.jsonl").read_bytes())
    assert rec["truncated"] is True and rec["raw_bytes"] == 5_000_000
    assert len(rec["raw"]) == cfg.engine.max_line_bytes + 1
