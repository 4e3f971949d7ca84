"""The worker's settings (`[worker]` in the config) and its data directory."""

from __future__ import annotations

from pathlib import Path

from streams.core.config import WorkerSettings

__all__ = ["WorkerSettings", "ensure_data_dir"]


def ensure_data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
