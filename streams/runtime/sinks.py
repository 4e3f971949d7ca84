"""Where the engine's output goes: one small protocol, and the file sinks.

Both runners hand each `Output` of the engine to a list of sinks in order, then close
them. The console's store, the alert topic and a webhook are sinks of the same shape,
wired by the command line, so the runners never import what they write to.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from streams.contract.reference import DeadLetter
from streams.core.config import DEAD_LETTER_MAX_BYTES
from streams.engine.engine import Output


@runtime_checkable
class Sink(Protocol):
    def write(self, out: Output) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """JSON Lines, appended and flushed per batch so a crash loses no written line.
    Locked: a webhook's delivery thread writes dead letters beside the runner's."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def write(self, lines: list[bytes]) -> None:
        if lines:
            with self._lock:
                self._fh.write(b"\n".join(lines) + b"\n")
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class AlertFile:
    def __init__(self, path: Path) -> None:
        self._file = FileSink(path)

    def write(self, out: Output) -> None:
        self._file.write([a.to_json() for a in out.alerts])

    def close(self) -> None:
        self._file.close()


class ShadowAlertFile:
    """A challenger's alerts (`--shadow-alerts`): the only sink that reads them, so they
    never reach the store's queue, a topic or a pager."""

    def __init__(self, path: Path) -> None:
        self._file = FileSink(path)

    def write(self, out: Output) -> None:
        self._file.write([a.to_json() for a in out.shadow_alerts])

    def close(self) -> None:
        self._file.close()


class DeadLetterFile:
    """Dead letters as JSON Lines. A raw line past `max_raw_bytes` keeps its first bytes, as
    the worker's dead-letter topic does: one 200 MB line would otherwise be a 1.2 GB record
    (every NUL byte escaped)."""

    def __init__(self, path: Path, max_raw_bytes: int = DEAD_LETTER_MAX_BYTES) -> None:
        self._file = FileSink(path)
        self._max = max_raw_bytes

    def _json(self, d: DeadLetter) -> bytes:
        # The reader hands a line too long to hold as its head, which knows its length.
        whole = getattr(d.raw, "length", len(d.raw))
        if whole <= self._max:
            return d.to_json()
        cut = dataclasses.replace(d, raw=d.raw[: self._max])
        return cut.to_json()[:-1] + b',"truncated":true,"raw_bytes":%d}' % whole

    def write(self, out: Output) -> None:
        self._file.write([self._json(d) for d in out.dead_letters])

    def dead_letter(self, dl: DeadLetter) -> None:
        """One dead letter made outside the engine (a webhook's); thread-safe."""
        self._file.write([self._json(dl)])

    def close(self) -> None:
        self._file.close()


class CallbackSink:
    """Any function of an Output, e.g. to collect alerts for a quality report."""

    def __init__(self, fn: Callable[[Output], None]) -> None:
        self._fn = fn

    def write(self, out: Output) -> None:
        self._fn(out)

    def close(self) -> None:
        pass
