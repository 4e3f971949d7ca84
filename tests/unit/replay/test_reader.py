"""Reading the replay input: a file that cannot be read to its end gives up every line
before the point where it breaks, then fails with one line."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from streams.replay.reader import CutLine, UnreadableInput, open_input, read_batches


def _lines(n: int) -> list[bytes]:
    return [b'{"event_id":"e%d","ts":%d,"account_id":"a%d"}' % (i, i, i % 97) for i in range(n)]


def _read_all(path: Path, read_ahead: bool) -> tuple[list[bytes], UnreadableInput | None]:
    got: list[bytes] = []
    with open_input(str(path)) as fh:
        try:
            for batch in read_batches(fh, 1000, read_ahead=read_ahead):
                got += batch
        except UnreadableInput as exc:
            return got, exc
    return got, None


@pytest.mark.parametrize("read_ahead", [False, True])
def test_a_gzip_file_cut_short_gives_every_line_before_the_cut(
    tmp_path: Path, read_ahead: bool
) -> None:
    whole = b"\n".join(_lines(200_000)) + b"\n"
    packed = gzip.compress(whole)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    # What any gzip reader can get out of the first half: every line it holds in full,
    # then part of the next.
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed[: len(packed) // 2])
    *full, partial = readable.split(b"\n")
    assert len(full) > 50_000 and partial

    got, failure = _read_all(cut, read_ahead)

    assert failure is not None and "unreadable after" in str(failure)
    assert "\n" not in str(failure)
    assert got == [*full, partial]  # the cut line too: the contract dead-letters it


def test_a_whole_gzip_file_reads_to_its_end(tmp_path: Path) -> None:
    lines = _lines(30_000)
    path = tmp_path / "whole.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert _read_all(path, True) == (lines, None)


@pytest.mark.parametrize("name", ["events.jsonl", "events", "events.json"])
def test_a_gzip_file_is_read_as_gzip_whatever_its_name(tmp_path: Path, name: str) -> None:
    # Named .jsonl, it was read as text: every line a dead letter (invalid_utf8).
    lines = _lines(5_000)
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert _read_all(path, True) == (lines, None)


def test_a_plain_file_named_gz_is_read_as_it_is(tmp_path: Path) -> None:
    lines = _lines(1_000)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert _read_all(path, False) == (lines, None)


def test_gzip_on_stdin_is_inflated(tmp_path: Path) -> None:
    import subprocess
    import sys

    lines = _lines(2_000)
    code = (
        "import sys; from streams.replay.reader import open_input; "
        "sys.stdout.write(str(sum(1 for _ in open_input('-'))))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=gzip.compress(b"\n".join(lines) + b"\n"),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == b"2000", r.stderr


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_a_line_too_long_to_hold_comes_as_its_head_knowing_its_length(
    tmp_path: Path, ending: bytes
) -> None:
    # A JSON array on one line: held whole, it took its size in memory, and joining every
    # chunk to it made reading quadratic.
    huge = b"[" + b'{"k":1},' * 2_000_000 + b"{}]"
    first, last = _lines(2)
    path = tmp_path / "array.jsonl"
    path.write_bytes(first + b"\n" + huge + b"\n" + last + ending)
    with open_input(str(path)) as fh:
        got = [ln for batch in read_batches(fh, 1000, max_line=1000) for ln in batch]
    assert got[0] == first and got[2] == last and len(got) == 3
    assert isinstance(got[1], CutLine) and got[1] == huge[:1001]
    assert got[1].length == len(huge)


def test_a_file_ending_inside_a_line_too_long_still_gives_that_line(tmp_path: Path) -> None:
    path = tmp_path / "no-end.bin"
    path.write_bytes(b"x" * 9_000_000)
    with open_input(str(path)) as fh:
        got = [ln for batch in read_batches(fh, 1000, max_line=100) for ln in batch]
    assert got == [b"x" * 101] and got[0].length == 9_000_000


class _BreaksAfter:
    """A stream that gives `data` in pieces, then fails as a disk or pipe can."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.at = data, piece, 0

    def read1(self, size: int) -> bytes:
        if self.at >= len(self.data):
            raise OSError("Input/output error")
        out = self.data[self.at : self.at + min(size, self.piece)]
        self.at += len(out)
        return out


def test_a_read_error_part_way_loses_no_line_read_before_it() -> None:
    lines = _lines(5_000)
    data = b"\n".join(lines) + b"\n"
    got: list[bytes] = []
    with pytest.raises(UnreadableInput, match=f"after {len(data):,} bytes"):
        for batch in read_batches(_BreaksAfter(data, 7_777), 1000):  # type: ignore[arg-type]
            got += batch
    assert got == lines


def test_replay_of_a_cut_file_flushes_then_raises_with_what_it_read(tmp_path: Path) -> None:
    """No caller (training sets, verdict rows, cross-source runs) takes part of a file for
    all of it: replay raises after closing the windows, and carries the summary."""
    from streams.engine.engine import Engine
    from streams.replay.reader import replay

    line = b'{"event_id":"e%d","ts":1767225600,"account_id":"acct-%d","endpoint":"chat"}'
    packed = gzip.compress(b"\n".join(line % (i, i % 50) for i in range(60_000)) + b"\n")
    cut = tmp_path / "events.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed[: len(packed) // 2])
    outs = []
    with open_input(str(cut)) as fh, pytest.raises(UnreadableInput) as failure:
        replay(Engine(), fh, outs.append)
    summary = failure.value.summary
    assert summary is not None and summary.lines == readable.count(b"\n") + 1
    assert str(cut) in str(failure.value)
    # The cut line is the one dead letter, and the flush's output reached the sink too.
    assert summary.dead_letters == 1 and sum(len(o.dead_letters) for o in outs) == 1
