"""`vigil produce` reads its file to the end, or says in one line where it could not."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from streams.kafka.produce import read_lines


def test_a_gzip_file_cut_short_gives_its_whole_lines_then_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    lines = [b'{"event_id":"e%d","ts":%d,"account_id":"a"}' % (i, i) for i in range(100_000)]
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 3])
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed[: len(packed) // 3])
    whole = readable.count(b"\n")
    got: list[bytes] = []
    with pytest.raises(ValueError) as failure:
        for line in read_lines(cut):
            got.append(line)
    message = str(failure.value)
    assert str(cut) in message and f"after {len(got):,} lines" in message
    assert "\n" not in message
    assert got == lines[:whole]  # every whole line before the cut, none held back


def test_a_whole_file_reads_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b"a\r\n\nb\nc"))
    assert list(read_lines(path)) == [b"a", b"b", b"c"]
