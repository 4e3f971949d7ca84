"""`vigil replay --control FILE`: the control topic's records, from a file, at event time.

Each line is one record as `vigil control` publishes it (streams/runtime/control.py), plus
`at`: the event time (epoch seconds or RFC 3339) from which it applies. A model or config
record applies to every window that starts at or after `at`; a snooze record
(`account_id`, `detector`, `until_epoch`, as the console publishes it) likewise. Every
record is checked, and every model loaded, before the first event is read: a bad record
stops the replay with one line naming its line number.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streams.core.config import VigilConfig
from streams.runtime.control import (
    ControlError,
    ControlState,
    Effective,
    parse_record,
    snooze_record,
)


@dataclass
class Step:
    at: float
    effective: Effective
    snoozes: dict[tuple[str, str], float]


@dataclass
class ReplayControl:
    steps: list[Step]
    store_snoozes: Any = None  # the store's SnoozeSource, merged under the file's
    index: int = -1  # the last step applied
    _ats: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ats = [s.at for s in self.steps]

    def before_window(self, engine: Any, start: float) -> None:
        i = bisect.bisect_right(self._ats, start) - 1
        if i <= self.index:
            return
        new, old = (
            self.steps[i].effective,
            self.steps[self.index].effective if self.index >= 0 else None,
        )
        self.index = i
        if old is None or new.generation != old.generation:
            engine.swap(new.config, new.classifier)

    def snoozed(self, now_epoch: float) -> dict[tuple[str, str], float]:
        # Called by the engine after before_window for the same window: index is current.
        mine = self.steps[self.index].snoozes if self.index >= 0 else {}
        if self.store_snoozes is None:
            return mine
        return {**self.store_snoozes(now_epoch), **mine}


def load_control(
    path: Path, config: VigilConfig, classifier: bool, store_snoozes: Any = None
) -> ReplayControl:
    """Every record of `path` applied in `at` order to a ControlState: one step each."""
    records: list[tuple[float, int, dict]] = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            if not isinstance(rec, dict):
                raise ControlError("not a JSON object")
            records.append((parse_at(rec.get("at")), n, rec))
        except (orjson.JSONDecodeError, ControlError) as exc:
            raise ControlError(f"{path} line {n}: {exc}") from None
    state = ControlState(config, classifier_enabled=classifier)
    steps: list[Step] = []
    for at, n, rec in sorted(records, key=lambda r: (r[0], r[1])):
        try:
            if rec.get("kind") == "snooze":
                key, value = snooze_record(
                    str(rec.get("account_id", "")),
                    str(rec.get("detector", "")),
                    rec.get("until_epoch"),  # type: ignore[arg-type]
                    str(rec.get("reason", "")),
                )
                state.snooze(key, value)
            else:
                state.apply(parse_record(rec))
        except ControlError as exc:
            raise ControlError(f"{path} line {n}: {exc}") from None
        steps.append(Step(at, state.current, state.snoozes))
    return ReplayControl(steps, store_snoozes)


def parse_at(value: Any) -> float:
    """Epoch seconds (a number or a numeric string) or an RFC 3339 time, finite: "nan"
    reads as a float, and written out became null, which no reader took."""
    at = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        at = float(value)
    elif isinstance(value, str):
        try:
            at = float(value)
        except ValueError:
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if at is None or not math.isfinite(at):
        raise ControlError(f"`at` must be epoch seconds or an RFC 3339 time, got {value!r}")
    return at
