"""Control records: what a running engine switches to without a restart.

Two kinds of record change how events are scored: a model record (a promotion or a
rollback: the classifier's file and its version) and a config record (the `[fusion]`
thresholds and the `[[rules]]`). A third kind, the snooze, mutes one detector for one
account. The workers read them from compacted topics (streams/kafka/control.py); replay
reads the same records from a JSON Lines file and applies each at its event time.

`ControlState` holds what the latest records make of the worker's own config. It builds
each new state whole and publishes it with one assignment, so a reader in another thread
never sees half of a change; a record that cannot be applied (a model that fails to load,
a config that does not validate) raises ControlError and leaves the state as it was.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.core.config import ConfigError, VigilConfig
from streams.core.config_checks import validate
from streams.core.config_load import config_from_dict
from streams.core.config_version import config_version

KINDS = ("model", "config")
MODEL_ACTIONS = ("promote", "rollback")
# What a config record may carry: the settings that no engine state depends on.
HOT_SECTIONS = ("fusion", "rules")
SNOOZE_KEY_SEP = "\x1f"  # the console's key: account_id + SEP + detector


class ControlError(ValueError):
    """A control record that is refused; the message says why, in one line."""


@dataclass(frozen=True)
class Effective:
    """One consistent state: the config to score with and the classifier loaded for it
    (None: the engine builds its own from `config.model_path`, as at start-up)."""

    config: VigilConfig
    classifier: Any = None
    generation: int = 0  # bumped by every applied model or config record
    model_version: str = ""
    config_version: str = ""


@dataclass
class ControlState:
    base: VigilConfig
    classifier_enabled: bool = True
    # A stricter model check from above this layer (the composition root passes one, e.g.
    # ONNX against scikit-learn on a sample): called with the model file, raises to refuse.
    check: Callable[[str], Any] | None = None
    current: Effective = field(init=False)
    snoozes: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.current = Effective(self.base, config_version=config_version(self.base))

    # -- model and config ----------------------------------------------------------------
    def apply(self, record: dict) -> Effective:
        """Apply one model or config record; returns the new state. Raises ControlError."""
        kind = record.get("kind")
        cur = self.current
        if kind == "model":
            path = resolve_model(str(record.get("model_path") or ""))
            if self.check is not None:
                try:
                    self.check(path)
                except Exception as exc:
                    raise ControlError(f"model {path} refused: {_line(exc)}") from None
            cfg = dataclasses.replace(cur.config, model_path=path)
            clf = self._load(cfg, str(record.get("version") or ""))
        elif kind == "config":
            cfg = hot_config(cur.config, record.get("config"))
            clf = cur.classifier
            calibrated = cfg.fusion.classifier_calibrated != cur.config.fusion.classifier_calibrated
            if calibrated and self._classifier_on(cfg):  # the flag is the classifier's own
                clf = self._load(cfg, cur.model_version)
        else:
            raise ControlError(f"unknown control record kind {kind!r}; known: {list(KINDS)}")
        new = Effective(
            cfg,
            clf,
            cur.generation + 1,
            getattr(clf, "version", cur.model_version) if clf is not None else cur.model_version,
            config_version(cfg),
        )
        self.current = new  # one assignment: readers see the old state or the new one
        return new

    def _classifier_on(self, cfg: VigilConfig) -> bool:
        return self.classifier_enabled and cfg.detectors.classifier.enabled

    def _load(self, cfg: VigilConfig, expect_version: str) -> Any:
        if not self._classifier_on(cfg):
            raise ControlError("this runner has no classifier to replace")
        return load_classifier(cfg, expect_version)

    # -- snoozes -------------------------------------------------------------------------
    def snooze(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the snoozes topic: the latest value per account and detector is
        the snooze; a lift is the same record with an `until_epoch` already past."""
        account, detector, until = parse_snooze(key, value)
        snoozes = dict(self.snoozes)  # copy, then swap: engines read it from another thread
        if until is None:
            snoozes.pop((account, detector), None)
        else:
            snoozes[(account, detector)] = until
        self.snoozes = snoozes

    def snoozed(self, now_epoch: float) -> dict[tuple[str, str], float]:
        """The engine's SnoozeSource: fusion compares `until` with each window's end."""
        return self.snoozes


def parse_record(value: bytes | dict) -> dict:
    if isinstance(value, dict):
        record = value
    else:
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ControlError(f"control record is not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        raise ControlError(f"control record needs a kind, one of {list(KINDS)}")
    return record


def parse_snooze(key: bytes | None, value: bytes | None) -> tuple[str, str, float | None]:
    """(account, detector, until or None for a tombstone) of one snoozes-topic record."""
    if value is None:  # a tombstone: compaction's way to forget the key
        if not key or SNOOZE_KEY_SEP.encode() not in key:
            raise ControlError("snooze tombstone without an account/detector key")
        account, detector = key.decode().split(SNOOZE_KEY_SEP, 1)
        return account, detector, None
    try:
        s = orjson.loads(value)
        return str(s["account_id"]), str(s["detector"]), float(s["until_epoch"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ControlError(f"snooze record unreadable: {type(exc).__name__}: {exc}") from None


def snooze_record(
    account: str, detector: str, until_epoch: float, reason: str
) -> tuple[bytes, bytes]:
    """Key and value exactly as the console publishes a snooze (console/labels.py)."""
    key = f"{account}{SNOOZE_KEY_SEP}{detector}".encode()
    body = {
        "account_id": account,
        "detector": detector,
        "until_epoch": until_epoch,
        "reason": reason,
    }
    return key, orjson.dumps(body)


# -- building records (the CLI) and checking them (every runner) --------------------------
def resolve_model(path: str) -> str:
    """The model file: a directory from `vigil train --out` holds classifier.onnx."""
    if not path:
        raise ControlError("model record without a model_path")
    p = Path(path)
    if p.is_dir():
        p = p / "classifier.onnx"
    if not p.is_file():
        raise ControlError(f"model {p} does not exist")
    if not p.with_suffix(".card.json").is_file():
        raise ControlError(f"model {p} has no card {p.with_suffix('.card.json').name}")
    return str(p.resolve())


def load_classifier(cfg: VigilConfig, expect_version: str = "") -> Any:
    """Load `cfg.model_path` and score one row with it; a model that cannot do both is
    refused here, before any engine sees it."""
    from detectors.classifier import ClassifierDetector
    from streams.features.window import FEATURES

    try:
        clf = ClassifierDetector(
            cfg.model_path,
            intra_op_threads=cfg.detectors.classifier.intra_op_threads,
            calibrated=cfg.fusion.classifier_calibrated,
        )
    except Exception as exc:
        raise ControlError(f"model {cfg.model_path} cannot be loaded: {_line(exc)}") from None
    unknown = sorted(set(clf.features) - set(FEATURES))
    if unknown:
        raise ControlError(f"model {cfg.model_path} needs features this build lacks: {unknown}")
    row = np.array([[clf.card["reference"][f]["median"] for f in clf.features]], np.float32)
    try:
        p = np.asarray(clf.probabilities(row))
    except Exception as exc:  # e.g. an input width other than its card's feature list
        raise ControlError(f"model {cfg.model_path} fails on a sample row: {_line(exc)}") from None
    if p.shape != (1, len(clf.classes)) or not np.isfinite(p).all():
        raise ControlError(f"model {cfg.model_path} gives probabilities of shape {p.shape}")
    if expect_version and clf.version != expect_version:
        raise ControlError(
            f"model {cfg.model_path} is version {clf.version}, the record says {expect_version}"
        )
    return clf


def _line(exc: BaseException) -> str:
    """onnxruntime's messages span lines; a refusal is logged and printed as one."""
    return " ".join(str(exc).split())[:500]


def hot_config(base: VigilConfig, sections: Any) -> VigilConfig:
    """`base` with the record's `[fusion]` and `[[rules]]`; a section the record leaves out
    keeps the runner's own. Anything else would change state and needs a restart."""
    if not isinstance(sections, dict):
        raise ControlError("config record needs a `config` table")
    other = sorted(set(sections) - set(HOT_SECTIONS))
    if other:
        raise ControlError(
            f"config record changes {other}: only {list(HOT_SECTIONS)} switch without a restart"
        )
    try:
        parsed = config_from_dict(dict(sections))
        cfg = dataclasses.replace(
            base,
            fusion=parsed.fusion if "fusion" in sections else base.fusion,
            rules=parsed.rules if "rules" in sections else base.rules,
        )
        validate(cfg)
    except ConfigError as exc:
        raise ControlError(f"config record: {exc}") from None
    return cfg


def model_record(model: str, action: str = "promote", by: str = "") -> dict:
    if action not in MODEL_ACTIONS:
        raise ControlError(f"action must be one of {list(MODEL_ACTIONS)}")
    path = resolve_model(model)
    clf = load_classifier(dataclasses.replace(VigilConfig(), model_path=path))
    return {
        "kind": "model",
        "action": action,
        "model_path": path,
        "version": clf.version,
        "ts": time.time(),
        "by": by,
    }


def config_record(sections: dict, by: str = "") -> dict:
    hot_config(VigilConfig(), sections)  # checked here too: refused before publishing
    return {
        "kind": "config",
        "config": sections,
        "ts": time.time(),
        "by": by,
    }
