"""The embedded runner: read JSON Lines from files or stdin and drive the engine."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from streams.core.inputs import open_events
from streams.core.problems import READ_ERRORS, one_line
from streams.engine.engine import Engine, Output
from streams.replay.pacing import Pacer

BATCH_LINES = 8192


def open_input(path: str) -> BinaryIO:
    if path != "-" and not Path(path).exists():
        raise FileNotFoundError(f"input {path} does not exist")
    return open_events(path)


class UnreadableInput(ValueError):
    """The input cannot be read on from some point: a gzip file cut short or damaged, or a
    read error. What was read before it is processed; the message is one line. From
    `replay`, it carries the summary of what was."""

    def __init__(self, message: str, summary: ReplaySummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def read_chunks(fh: BinaryIO, size: int = 4 << 20) -> Iterator[bytes]:
    """Chunks of about `size` bytes. Built from `read1` calls, each what one read gives: a
    read of `size` that fails part way drops what it had inflated, so a gzip file cut short
    would lose the lines before the cut."""
    read = getattr(fh, "read1", None) or fh.read
    done = 0
    while True:
        parts: list[bytes] = []
        got = 0
        try:
            while got < size and (part := read(size - got)):
                parts.append(part)
                got += len(part)
        except READ_ERRORS as exc:
            if parts:
                yield b"".join(parts)
            name = getattr(fh, "name", None) or "the input"  # a path, or <stdin>
            raise UnreadableInput(
                f"input {name} is unreadable after {done + got:,} bytes ({one_line(exc)})"
            ) from None
        if parts:
            yield b"".join(parts)  # one part: the same object, not a copy
        if got < size:
            return
        done += got


class CutLine(bytes):
    """The head of a line too long to hold (`read_batches`): `length` is the whole line's.
    The contract dead-letters it as `too_large` and the dead letter names that length."""

    length: int


# Lines are cut past this when the caller names no limit (`read_batches`'s `max_line`).
LONG_LINE_CUT = 64 << 20


def read_batches(
    fh: BinaryIO, size: int = BATCH_LINES, read_ahead: bool = False, max_line: int = LONG_LINE_CUT
) -> Iterator[list[bytes]]:
    """Batches of lines, read in large chunks rather than line by line.

    With `read_ahead`, a thread reads (and inflates) the next chunks meanwhile; splitting
    stays here, so that thread rarely holds the GIL. CRLF files lose their CR. Blank lines
    are kept: the contract dead-letters them as empty records, so nothing goes uncounted.
    A line over `max_line` bytes comes as a `CutLine` of its first `max_line + 1`: still
    too large for a contract with that limit. Held whole, a file with no line ends (a JSON
    array on one line, a binary file) took its size in memory, and joining each chunk to
    it made reading quadratic.
    """
    chunks = prefetch(read_chunks(fh)) if read_ahead else read_chunks(fh)
    keep = max_line + 1
    buf: list[bytes] = []
    tail = b""
    cut: CutLine | None = None  # the head of a line being skipped to its end
    failure: UnreadableInput | None = None
    try:
        for chunk in chunks:
            if cut is not None:
                end = chunk.find(b"\n")
                if end < 0:
                    cut.length += len(chunk)
                    continue
                cut.length += end
                buf.append(cut)
                cut, chunk = None, chunk[end + 1 :]
            data = tail + chunk
            lines = data.split(b"\n")
            tail = lines.pop()
            if b"\r" in data:
                lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
            buf.extend(lines)
            if len(tail) > keep:
                cut = CutLine(tail[:keep])
                cut.length, tail = len(tail), b""
            while len(buf) >= size:
                yield buf[:size]
                buf = buf[size:]
    except UnreadableInput as exc:
        failure = exc  # the lines read before it still go out, below; then it is raised
    if cut is not None:
        buf.append(cut)
    if tail:  # cut short by a failure, it is a malformed line: dead-lettered, so counted
        buf.append(tail[:-1] if tail.endswith(b"\r") else tail)
    if buf:
        yield buf
    if failure is not None:
        raise failure


def prefetch(items: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Run an iterator ahead in a thread. Reading and inflating release the GIL, so on a
    second core they overlap the engine instead of adding to it; an error there is raised
    here."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for b in items:
                if not put(b):
                    return
            put(end)
        except BaseException as exc:  # handed to the reading side, which raises it
            put(exc)

    threading.Thread(target=run, name="vigil-reader", daemon=True).start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


@dataclass
class ReplaySummary:
    lines: int = 0
    alerts: int = 0
    dead_letters: int = 0
    rejected: Counter = field(default_factory=Counter)
    by_category: Counter = field(default_factory=Counter)
    by_severity: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    budget_evicted: int = 0  # accounts evicted to keep state within its byte budget
    windows_forced: int = 0  # windows closed early to bound the open windows' bytes
    windows_split: int = 0  # windows scored in parts, their accounts past the budget
    dedup_turned: int = 0  # dedup generations turned over early


def replay(
    engine: Engine,
    fh: BinaryIO,
    sink: Callable[[Output], None],
    progress: Callable[[int], None] | None = None,
    pacer: Pacer | None = None,
) -> ReplaySummary:
    import time

    summary = ReplaySummary()
    t0 = time.perf_counter()
    size = pacer.batch_lines if pacer else BATCH_LINES
    try:
        for lines in read_batches(fh, size, True, engine.cfg.engine.max_line_bytes):
            out = engine.process_lines(lines)
            summary.lines += len(lines)
            _account(summary, out)
            sink(out)
            if progress:
                progress(len(lines))
            if pacer:
                pacer.after_batch(len(lines), engine.max_ts)
    except UnreadableInput as exc:
        # The input ends there: its windows close and its alerts go out as at its end,
        # then the error is raised with the summary, so no caller takes part of a file
        # for all of it (runner.run_replay reports it in one line).
        failure = exc
    else:
        failure = None
    out = engine.flush()
    _account(summary, out)
    sink(out)
    summary.seconds = time.perf_counter() - t0
    summary.budget_evicted = engine.budget_evicted
    summary.windows_forced = engine.windows_forced
    summary.windows_split = engine.windows_split
    summary.dedup_turned = engine.dedup_turned_early
    if failure is not None:
        raise UnreadableInput(str(failure), summary)
    return summary


def _account(summary: ReplaySummary, out: Output) -> None:
    summary.alerts += len(out.alerts)
    summary.dead_letters += len(out.dead_letters)
    for d in out.dead_letters:
        summary.rejected[d.reason] += 1
    for a in out.alerts:
        summary.by_category[a.category] += 1
        summary.by_severity[a.severity] += 1
