"""`vigil warm`: the engine's whole state built from history, through the replay path.

The state is what `vigil replay --state` loads and saves (`Engine.state_dict` in the
checkpoint format of streams/runtime/checkpoint_codec.py, the worker's too):
the account table with its history rings, the campaign indexes, every detector's state
(baselines, population trees, ...), fusion's cooldowns and the open windows. Nothing is
flushed at the end: the last windows stay open in the state, so a replay of what follows
continues exactly where the history stopped, as a checkpoint would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.base import Detector
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from streams.replay.reader import BATCH_LINES, open_input, read_batches
from streams.runtime.checkpoint_codec import CheckpointFormatError, decode_state, encode_state


@dataclass
class WarmSummary:
    lines: int = 0
    accounts: int = 0
    alerts: int = 0  # raised while warming; not written anywhere
    dead_letters: int = 0


def warm_engine(
    cfg: VigilConfig,
    paths: list[str],
    detectors: dict[str, Detector] | None = None,
    on_scores: Callable | None = None,
) -> tuple[Engine, WarmSummary]:
    """Run the files, in the order given, through one engine without flushing it."""
    engine = Engine(cfg, detectors=detectors, on_scores=on_scores)
    summary = WarmSummary()
    for path in paths:
        with open_input(path) as fh:  # one it cannot read raises: no state from part of it
            for lines in read_batches(fh, BATCH_LINES, True, cfg.engine.max_line_bytes):
                out = engine.process_lines(lines)
                summary.lines += len(lines)
                summary.alerts += len(out.alerts)
                summary.dead_letters += len(out.dead_letters)
    summary.accounts = len(engine.table)
    return engine, summary


def splice(base: Engine, warmed: Engine, names: list[str]) -> None:
    """Give `base` the warmed state of detectors `names`, keeping everything else of its
    own: a changed or reset detector starts warm while the others keep their state."""
    for name in names:
        base.detectors[name].load_state_dict(warmed.detectors[name].state_dict())


def reset(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A state whose detectors `names` start empty when loaded (`Engine.load_state_dict`
    leaves a detector missing from the state as it was built)."""
    unknown = sorted(set(names) - set(state["detectors"]))
    if unknown:
        known = ", ".join(sorted(state["detectors"]))
        raise ValueError(f"no detector {', '.join(unknown)} in the state; it holds {known}")
    return {**state, "detectors": {k: v for k, v in state["detectors"].items() if k not in names}}


def save_state(engine: Engine, path: Path) -> int:
    """Writes the engine's state to `path`; returns its size in bytes."""
    blob = encode_state(engine.state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside it, then renamed over it: a run killed while writing keeps the previous state.
    part = path.with_name(path.name + ".partial")
    part.write_bytes(blob)
    os.replace(part, path)
    return len(blob)


def load_state(path: Path) -> dict[str, Any]:
    """The engine state saved in `path`, in the codec's format or the plain pickle that
    replay and warm wrote before it; a ValueError naming the file and the problem if not."""
    try:
        state = decode_state(path.read_bytes())
    except CheckpointFormatError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(state, dict) or "detectors" not in state:
        raise ValueError(f"{path}: not an engine state (it holds a {type(state).__name__})")
    return state
