"""`vigil warm`: the engine's whole state built from history, through the replay path.

The state is what `vigil replay --state` loads and saves (`Engine.state_dict`, pickled):
the account table with its history rings, the campaign indexes, every detector's state
(baselines, population trees, ...), fusion's cooldowns and the open windows. Nothing is
flushed at the end: the last windows stay open in the state, so a replay of what follows
continues exactly where the history stopped, as a checkpoint would.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.base import Detector
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from streams.replay.reader import BATCH_LINES, open_input, read_batches


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
        with open_input(path) as fh:
            for lines in read_batches(fh, BATCH_LINES, read_ahead=True):
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
    blob = pickle.dumps(engine.state_dict(), protocol=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return len(blob)


def load_state(path: Path) -> dict[str, Any]:
    try:
        return pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path} is not an engine state ({type(exc).__name__})") from None
