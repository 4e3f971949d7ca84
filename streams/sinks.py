"""File sinks: JSON Lines, appended and flushed per batch so a crash loses no written line."""

from __future__ import annotations

from pathlib import Path


class FileSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, lines: list[bytes]) -> None:
        if lines:
            self._fh.write(b"\n".join(lines) + b"\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()
