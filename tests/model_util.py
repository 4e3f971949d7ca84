"""Model directories for registry tests, made from the shipped model in about a second."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import orjson

from models.train import ARTIFACTS


def fewer_trees(out: Path, n: int = 20, src: Path = ARTIFACTS) -> Path:
    """A genuinely different model: the shipped gradient boosting cut to its first `n`
    stages, exported to ONNX again, with its own card version. Passes every check."""
    from skl2onnx import to_onnx

    out.mkdir(parents=True, exist_ok=True)
    m = pickle.loads((src / "classifier.skl.pkl").read_bytes())
    m.estimators_ = m.estimators_[:n]
    m.train_score_ = m.train_score_[:n]
    m.n_estimators = m.n_estimators_ = n
    x0 = np.zeros((1, m.n_features_in_), np.float32)
    blob = to_onnx(m, x0, options={id(m): {"zipmap": False}}, target_opset=17).SerializeToString()
    card = orjson.loads((src / "classifier.card.json").read_bytes())
    card["version"] = "clf-" + hashlib.sha256(blob).hexdigest()[:12]
    card["params"]["n_estimators"] = n
    (out / "classifier.onnx").write_bytes(blob)
    (out / "classifier.skl.pkl").write_bytes(pickle.dumps(m, protocol=5))
    (out / "classifier.card.json").write_bytes(orjson.dumps(card))
    return out


def copy_model(out: Path, src: Path = ARTIFACTS) -> Path:
    shutil.copytree(src, out)
    return out
