"""Checks a model must pass before a detector may use it.

An ONNX file can be present and still wrong: exported from another feature list, cut
short by a copy, or converted with a bug that changes its probabilities. Each check
raises ModelRefused with one line naming the file and the problem, so the command that
loads the model stops before any event is read and the running model stays in place.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.features.window import FEATURES

# Largest difference in any class probability allowed between onnxruntime and the
# scikit-learn original on the sample; export noise is ~1e-6 (float32 trees).
PARITY_TOLERANCE = 1e-3
SAMPLE_ROWS = 64
# (path, size, mtime) -> the parity already measured for that exact file pair.
_checked: dict[tuple[str, int, int, int, int], float] = {}


class ModelRefused(ValueError):
    """A model file that must not be used; the message is one line."""


def require_files(model: Path, card: Path) -> None:
    if not model.is_file():
        raise ModelRefused(f"model file {model} does not exist")
    if not card.is_file():
        raise ModelRefused(f"model card {card} does not exist")
    original = model.with_suffix(".skl.pkl")
    if not original.is_file():
        raise ModelRefused(
            f"{original} does not exist: without the scikit-learn original the ONNX export "
            "cannot be checked"
        )


def check_width(model: Path, session: Any, features: list[str], extra: int = 0) -> None:
    """The model's input width must be the card's feature count (+ `extra` inputs), and
    every feature must be one the engine computes."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ModelRefused(f"model {model}: the engine computes no feature {unknown[0]!r}")
    shape = session.get_inputs()[0].shape
    width = shape[1] if len(shape) == 2 else None
    want = len(features) + extra
    if not isinstance(width, int) or width != want:
        raise ModelRefused(
            f"model {model} takes {width} inputs per row, its card lists {want}: "
            "model and card do not belong together"
        )


def sample(lo: np.ndarray, hi: np.ndarray, rows: int = SAMPLE_ROWS) -> np.ndarray:
    """Seeded rows spread over each input's range (log-uniform for wide ranges), so the
    check reaches deep into the trees rather than only their default branches."""
    rng = np.random.default_rng(17)
    lo = np.nan_to_num(lo, nan=0.0, neginf=0.0, posinf=1.0)
    hi = np.maximum(np.nan_to_num(hi, nan=1.0, neginf=1.0, posinf=1e6), lo)
    u = rng.random((rows, len(lo)))
    lin = lo + u * (hi - lo)
    pos = lo >= 0
    a, b = np.log1p(np.where(pos, lo, 0.0)), np.log1p(np.where(pos, hi, 0.0))
    log = np.where(pos, np.clip(np.expm1(a + u * (b - a)), lo, hi), lin)
    return np.where(rng.random((rows, len(lo))) < 0.5, lin, log).astype(np.float32)


def check_parity(model: Path, run_onnx: Any, X: np.ndarray) -> float:
    """onnxruntime's probabilities against the scikit-learn original's on `X`."""
    original = model.with_suffix(".skl.pkl")
    st, so = model.stat(), original.stat()
    key = (str(model.resolve()), st.st_size, st.st_mtime_ns, so.st_size, so.st_mtime_ns)
    if key in _checked:
        return _checked[key]
    try:
        skl = pickle.loads(original.read_bytes())
    except Exception as exc:  # a truncated or foreign pickle: refuse, do not guess
        raise ModelRefused(f"{original} cannot be read: {type(exc).__name__}") from None
    try:
        p_skl = np.asarray(skl.predict_proba(X))
    except Exception as exc:
        raise ModelRefused(
            f"{original} does not accept the model's inputs: {type(exc).__name__}"
        ) from None
    p_onnx = np.asarray(run_onnx(X))
    if p_onnx.shape != p_skl.shape:
        raise ModelRefused(
            f"model {model}: ONNX gives {p_onnx.shape[1]} classes, scikit-learn "
            f"{p_skl.shape[1]}: not the same model"
        )
    diff = float(np.max(np.abs(p_onnx - p_skl))) if len(X) else 0.0
    if not diff <= PARITY_TOLERANCE:
        raise ModelRefused(
            f"model {model}: ONNX and scikit-learn disagree by {diff:.3g} on a sample "
            f"(tolerance {PARITY_TOLERANCE:g}): the export is broken"
        )
    _checked[key] = diff
    return diff


def read_card(path: Path) -> dict[str, Any]:
    """A model card: a JSON object, or ModelRefused naming the file."""
    try:
        card = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ModelRefused(f"model card {path} is not JSON ({exc})") from None
    if not isinstance(card, dict):
        raise ModelRefused(f"model card {path} is not a JSON object")
    return card
