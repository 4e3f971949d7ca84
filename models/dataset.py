"""Labelled account-windows from generated traffic, for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from streams.core.batch import FeatureBatch
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from streams.features.window import FEATURES
from streams.replay.reader import open_input, replay
from synth.scenarios import CATEGORY


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray  # class name per row
    account_ids: np.ndarray
    window_end: np.ndarray


def window_labels(batch: FeatureBatch, accounts: dict[str, dict]) -> np.ndarray:
    """A row is misuse when its window overlaps the account's misuse activity."""
    y = np.full(len(batch), "benign", dtype=object)
    for i, acct in enumerate(batch.account_ids.tolist()):
        lab = accounts.get(acct)
        if not lab or lab["label"] == "benign":
            continue
        if batch.window_end[i] > lab["onset"] and batch.window_start[i] <= lab["end"]:
            y[i] = CATEGORY.get(lab["label"], lab["label"])
    return y


def features_of(events: Path, labels: Path, config: VigilConfig | None = None) -> Dataset:
    accounts = orjson.loads(labels.read_bytes())["accounts"]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def keep(batch: FeatureBatch) -> None:
        parts.append(
            (batch.X.copy(), window_labels(batch, accounts), batch.account_ids, batch.window_end)
        )

    # Features do not depend on detectors, so none are run while collecting them.
    engine = Engine(config, detectors={}, on_features=keep)
    with open_input(str(events)) as fh:
        replay(engine, fh, sink=lambda out: None)
    return Dataset(
        X=np.vstack([p[0] for p in parts]) if parts else np.zeros((0, len(FEATURES))),
        y=np.concatenate([p[1] for p in parts]),
        account_ids=np.concatenate([p[2] for p in parts]),
        window_end=np.concatenate([p[3] for p in parts]),
    )
