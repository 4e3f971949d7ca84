"""Checks a model directory must pass before it is registered, promoted or run in shadow.

A model directory holds `classifier.onnx`, its card `classifier.card.json` and the
scikit-learn original `classifier.skl.pkl` it was exported from. The checks: the files
are there, the card names features the engine computes, the ONNX input is as wide as the
card's feature list, and ONNX and scikit-learn give the same probabilities on a fixed
sample spread over the card's training ranges. Any failure is one line naming the model.

The pickle is loaded to compare against it, which runs code from the file: only register
model directories you built or trust, as with any scikit-learn artifact.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.model_checks import ModelRefused, read_card

ONNX, CARD, SKL, README = (
    "classifier.onnx",
    "classifier.card.json",
    "classifier.skl.pkl",
    "MODEL_CARD.md",
)
REQUIRED = (ONNX, CARD, SKL)
# float32 ONNX trees against float64 scikit-learn: the shipped model differs by ~3e-7.
PARITY_TOLERANCE = 1e-4
SAMPLE_ROWS = 512


class ModelRejected(ValueError):
    """The model fails a check; the message is one line that says which and why."""


@dataclass(frozen=True)
class ModelCheck:
    version: str  # the card's version, which alerts carry as model_version
    features: int
    parity: float  # largest |ONNX - scikit-learn| probability on the sample
    rows: int


def model_dir(path: str | Path) -> Path:
    """A model is named by its directory or by the .onnx file in it."""
    p = Path(path)
    return p.parent if p.suffix == ".onnx" else p


def sample_rows(card: dict[str, Any], rows: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows spread log-uniformly over each feature's training range (or up to twice its
    99th percentile when the card has no ranges), so every tree branch gets exercised."""
    rng = np.random.default_rng(seed)
    feats = card["features"]
    ranges = card.get("range") or {}
    ref = card.get("reference") or {}
    lo = np.array([max(float(ranges.get(f, [0.0, 0.0])[0]), 0.0) for f in feats])
    hi = np.array(
        [
            float(ranges[f][1]) if f in ranges else 2 * float(ref.get(f, {}).get("p99", 1.0))
            for f in feats
        ]
    )
    hi = np.maximum(hi, lo)
    u = rng.random((rows, len(feats)))
    X = np.expm1(np.log1p(lo) + u * (np.log1p(hi) - np.log1p(lo)))
    X[rng.random(X.shape) < 0.2] = 0.0  # many features are often exactly zero
    return X.astype(np.float32)


def check_model(path: str | Path, engine_features: tuple[str, ...] | None = None) -> ModelCheck:
    """Raise ModelRejected unless the model at `path` is complete, as wide as its card says
    and the engine provides, and its ONNX export agrees with its scikit-learn original."""
    d = model_dir(path)
    if not d.exists():
        raise ModelRejected(f"model {d}: does not exist")
    if not d.is_dir():
        raise ModelRejected(f"model {d}: not a directory")
    missing = [n for n in REQUIRED if not (d / n).is_file()]
    if missing:
        raise ModelRejected(f"model {d}: missing {', '.join(missing)}")
    try:
        card = read_card(d / CARD)
        feats = list(card["features"])
        classes = list(card["classes"])
        version = str(card["version"])
    except ModelRefused as exc:
        raise ModelRejected(f"model {d}: {exc}") from None
    except KeyError as exc:
        raise ModelRejected(f"model {d}: unreadable card {CARD} (no {exc})") from None
    except TypeError as exc:
        raise ModelRejected(f"model {d}: unreadable card {CARD} ({exc})") from None
    if engine_features is not None:
        unknown = [f for f in feats if f not in engine_features]
        if unknown:
            raise ModelRejected(f"model {d}: card names features the engine lacks: {unknown[:5]}")
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(d / ONNX), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a corrupt file
        raise ModelRejected(f"model {d}: {ONNX} cannot be loaded ({type(exc).__name__})") from None
    inp = sess.get_inputs()[0]
    width = inp.shape[-1] if inp.shape else None
    if width != len(feats):
        raise ModelRejected(
            f"model {d}: ONNX input width {width} but the card lists {len(feats)} features"
        )
    probs = [o.name for o in sess.get_outputs() if "prob" in o.name]
    if not probs:
        raise ModelRejected(f"model {d}: {ONNX} has no probabilities output")
    try:
        skl = pickle.loads((d / SKL).read_bytes())
    except Exception as exc:
        raise ModelRejected(f"model {d}: {SKL} cannot be loaded ({exc!r})") from None
    if getattr(skl, "n_features_in_", len(feats)) != len(feats):
        raise ModelRejected(
            f"model {d}: scikit-learn model takes {skl.n_features_in_} features, "
            f"the card lists {len(feats)}"
        )
    if [str(c) for c in getattr(skl, "classes_", classes)] != classes:
        raise ModelRejected(f"model {d}: scikit-learn classes differ from the card's")
    X = sample_rows(card)
    try:
        (p_onnx,) = sess.run([probs[0]], {inp.name: X})
        p_skl = skl.predict_proba(X)
    except Exception as exc:
        raise ModelRejected(f"model {d}: scoring the parity sample failed ({exc!r})") from None
    if p_onnx.shape != p_skl.shape:
        raise ModelRejected(
            f"model {d}: ONNX gives {p_onnx.shape[1]} classes, scikit-learn {p_skl.shape[1]}"
        )
    parity = float(np.max(np.abs(p_onnx - p_skl)))
    if not parity <= PARITY_TOLERANCE:
        raise ModelRejected(
            f"model {d}: ONNX and scikit-learn disagree by {parity:.3g} on {len(X)} sample rows "
            f"(tolerance {PARITY_TOLERANCE:g})"
        )
    # Last, the engine's own loader (and whatever checks it makes): what a run would do.
    from detectors.classifier import ClassifierDetector

    try:
        ClassifierDetector(str(d / ONNX))
    except Exception as exc:
        raise ModelRejected(f"model {d}: the engine cannot load it ({exc})") from None
    return ModelCheck(version, len(feats), parity, len(X))
