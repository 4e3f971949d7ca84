"""Errors said in one line: what every command prints when something outside it fails."""

from __future__ import annotations

import zlib

# What reading a file raises when it is cut short or damaged (gzip.BadGzipFile is an
# OSError), or the disk fails under it.
READ_ERRORS = (EOFError, OSError, zlib.error)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (some span several), or its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__
