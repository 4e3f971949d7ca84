"""A stable version string for the effective detection config.

Workers that disagree on it score the same traffic differently, so each runner exports it
(`vigil_config_info{config_version}`) and an alert rule compares them. Only what changes
detection goes in: the engine, fusion and rule settings and the model path. Kafka
addresses, credentials and the store URL are deployment details that may differ per
process without changing a single score, and must not leak into a label.
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

from streams.core.config import VigilConfig


def config_version(cfg: VigilConfig) -> str:
    fusion = dataclasses.asdict(cfg.fusion)
    for table in ("thresholds", "min_severity"):  # left out when empty: the hash of a config
        if not fusion[table]:  # without them stays what it was before they existed
            del fusion[table]
    effective = {
        "engine": dataclasses.asdict(cfg.engine),
        "fusion": fusion,
        "rules": [dataclasses.asdict(r) for r in cfg.rules],
        "model_path": cfg.model_path,
    }
    # Sorted keys and a fixed encoding: the same settings hash the same in every process.
    blob = orjson.dumps(effective, option=orjson.OPT_SORT_KEYS)
    return "cfg-" + hashlib.sha256(blob).hexdigest()[:12]
