"""Event files as users hand them over: JSON Lines, plain or gzip-compressed, told apart
by their first bytes rather than their names. A file compressed but named `.jsonl` was
read as text before, and every line of it went to dead letters as `invalid_utf8`."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import BinaryIO

# A gzip stream's first two bytes. No JSON line starts with byte 0x1f (a control
# character), so a file or stream that does is compressed, whatever it is called.
GZIP_MAGIC = b"\x1f\x8b"


def open_events(path: str | Path) -> BinaryIO:
    """`path` (or "-" for stdin) for reading its lines, inflated if it is gzip."""
    if str(path) == "-":
        stdin = sys.stdin.buffer
        peek = getattr(stdin, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=stdin, mode="rb")  # type: ignore[return-value]
        return stdin
    p = Path(path)
    if _starts_gzip(p):
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return open(p, "rb", buffering=1 << 20)


def _starts_gzip(p: Path) -> bool:
    if not p.is_file():  # a pipe: reading to look would take the bytes away
        return p.suffix == ".gz"
    with open(p, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC
