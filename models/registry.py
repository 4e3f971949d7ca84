"""The file side of the model registry: content-addressed model directories.

A registered version is a copy of a model directory under the registry root, named by
the hash of its files (`m-` + 12 hex digits of SHA-256 over each file's name and bytes),
so the same files always get the same version, and a version's files can be checked for
change before they run. Who added it, why, its parent and its stage live in the store
(console/registry.py); the command line (streams/cli/models_cmd.py) puts the two together.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from models.verify import CARD, ONNX, README, REQUIRED, SKL, model_dir

FILES = (ONNX, CARD, SKL, README)  # what a version holds; README (the card in prose) optional
PREFIX = "m-"
DIGITS = 12


def content_hash(path: str | Path) -> str:
    """The version id of the model files in `path` (a directory or its .onnx file)."""
    d = model_dir(path)
    h = hashlib.sha256()
    for name in FILES:
        f = d / name
        if not f.is_file():
            continue
        data = f.read_bytes()
        # name and length first, so no two file sets can hash the same concatenation
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return PREFIX + h.hexdigest()[:DIGITS]


@dataclass(frozen=True)
class Stored:
    version: str
    path: Path
    new: bool  # False: these files were already in the registry root


def store_files(src: str | Path, root: Path) -> Stored:
    """Copy the model at `src` to ROOT/<version>/ (atomically: a temporary folder renamed)."""
    d = model_dir(src)
    version = content_hash(d)
    dest = root / version
    if dest.is_dir():
        return Stored(version, dest, new=False)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        for name in FILES:
            if (d / name).is_file():
                shutil.copyfile(d / name, tmp / name)
        if content_hash(tmp) != version:  # changed while being copied
            raise ValueError(f"model {d} changed while it was being copied; add it again")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return Stored(version, dest, new=True)


def intact(path: Path, version: str) -> str | None:
    """Why the stored files of `version` cannot be used, or None when they still hash to it."""
    missing = [n for n in REQUIRED if not (path / n).is_file()]
    if missing:
        return f"{path}: missing {', '.join(missing)}"
    now = content_hash(path)
    if now != version:
        return f"{path}: files changed since registration (they hash to {now})"
    return None


def card_summary(path: str | Path) -> dict[str, Any]:
    """What the registry keeps of a card: its version, width, held-out metrics, lineage."""
    card = orjson.loads((model_dir(path) / CARD).read_bytes())
    per_class = (card.get("holdout") or {}).get("per_class") or {}
    misuse = {c: m for c, m in per_class.items() if c != "benign"}

    def macro(key: str) -> float | None:
        vals = [float(m[key]) for m in misuse.values() if key in m]
        return round(sum(vals) / len(vals), 4) if vals else None

    return {
        "model_version": str(card["version"]),
        "features": len(card["features"]),
        "classes": list(card["classes"]),
        "macro_precision": macro("precision"),
        "macro_recall": macro("recall"),
        "per_class": per_class,
        "holdout": (card.get("holdout") or {}).get("seed"),
        "parity": card.get("onnx_parity_max_abs_diff"),
        "training_data": card.get("training_data"),
        "parent": card.get("parent"),
    }
