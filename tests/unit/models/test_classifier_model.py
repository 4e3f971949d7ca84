"""The shipped classifier: its card matches the engine, and ONNX agrees with scikit-learn."""

from __future__ import annotations

import pickle

import numpy as np
import orjson

from detectors.classifier import DEFAULT_MODEL, ClassifierDetector
from models.dataset import features_of
from models.train import CLASSES
from streams.features.window import FEATURES


def test_card_describes_the_engine_features() -> None:
    card = orjson.loads(DEFAULT_MODEL.with_suffix(".card.json").read_bytes())
    assert card["features"] == list(FEATURES)
    assert sorted(card["classes"]) == sorted(CLASSES)
    assert card["onnx_parity_max_abs_diff"] < 1e-4
    assert set(card["reference"]) == set(FEATURES)


def test_onnx_matches_sklearn_on_real_windows(small_corpus) -> None:
    ds = features_of(*small_corpus)
    X = np.nan_to_num(ds.X.astype(np.float32))
    clf = ClassifierDetector()
    skl = pickle.loads(DEFAULT_MODEL.with_suffix(".skl.pkl").read_bytes())
    p_onnx, p_skl = clf.probabilities(X), skl.predict_proba(X)
    assert p_onnx.shape == p_skl.shape == (len(X), len(CLASSES))
    assert np.abs(p_onnx - p_skl).max() < 1e-4
    # The model separates misuse from benign windows on a corpus it never saw.
    misuse = ds.y != "benign"
    benign_col = list(clf.classes).index("benign")
    score = 1 - p_onnx[:, benign_col]
    assert score[misuse].mean() > 0.5 > score[~misuse].mean()
