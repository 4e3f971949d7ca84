"""The verdict gate: a second opinion, learned from analysts' verdicts, on windows about to alert.

Fusion lets the classifier, the rules and the campaign detector each raise an alert alone,
so a retrained classifier could only add evidence; it could never take back a false
alarm another detector raised. The gate sees what fusion sees for a window that crossed
the alert threshold (the account-window's features and every detector's score) and gives
the probability that an analyst would call it misuse. Below its threshold the alert is
vetoed; above it, the alert carries the probability as the `verdict_gate` score, so an
analyst can see it was checked. On an account analysts cleared (judged a false positive
and never misuse), the bar is higher: `cleared_threshold`.

`vigil train --verdicts` fits it (models/verdict_train.py) and writes `gate.onnx` with
`gate.card.json` beside the classifier in the model directory; the classifier detector
loads it from there, and fusion applies it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.core.batch import FeatureBatch

GATE_NAME = "verdict_gate"
# The detectors whose scores the gate reads, in this order, after the features.
SCORED = ("rules", "campaign", "takeover", "classifier", "baseline", "population")


def gate_inputs(
    batch: FeatureBatch,
    scores: dict[str, np.ndarray],
    rows: np.ndarray,
    features: list[str],
    scored: tuple[str, ...] = SCORED,
) -> np.ndarray:
    """The gate's input matrix for `rows`: the features, then the detectors' scores. The
    same function builds it for training and for scoring, so the two cannot drift."""
    cols = [np.asarray(batch.col(f))[rows] for f in features]
    zero = np.zeros(len(rows))
    cols += [np.asarray(scores[name])[rows] if name in scores else zero for name in scored]
    if not cols:
        return np.zeros((len(rows), 0), dtype=np.float32)
    return np.nan_to_num(np.stack(cols, axis=1).astype(np.float32), nan=0.0)


def account_key(account_id: str) -> str:
    """How the card names a cleared account: a hash, so the card holds no account ids."""
    return hashlib.sha256(str(account_id).encode()).hexdigest()[:16]


def box_distance(X: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, summed over inputs, how far it lies outside [lo, hi], in log1p units."""
    lx = np.log1p(np.maximum(X, 0.0))
    above = np.maximum(lx - np.log1p(np.maximum(hi, 0.0)), 0.0)
    below = np.maximum(np.log1p(np.maximum(lo, 0.0)) - lx, 0.0)
    return np.nan_to_num(above + below).sum(axis=1)


class VerdictGate:
    """Loaded from `gate.onnx` and `gate.card.json`; `judge` gives P(misuse) per row."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        card_path = path.with_suffix(".card.json")
        if not card_path.is_file():
            raise FileNotFoundError(f"gate card {card_path} is missing")
        self.card: dict[str, Any] = orjson.loads(card_path.read_bytes())
        self.features: list[str] = list(self.card["features"])
        self.scored: tuple[str, ...] = tuple(self.card["scored"])
        self.threshold = float(self.card["threshold"])
        self.version: str = self.card["version"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name
        self._prob = [o.name for o in self.session.get_outputs() if "prob" in o.name][0]
        self.width = len(self.features) + len(self.scored)
        names = [*self.features, *self.scored]
        box = self.card.get("false_positive_box") or {}
        self._box_lo = np.array([box.get(n, [0.0, np.inf])[0] for n in names], dtype=float)
        self._box_hi = np.array([box.get(n, [0.0, np.inf])[1] for n in names], dtype=float)
        self.familiar_within = float(self.card.get("familiar_within", np.inf))
        # Accounts analysts cleared (false positive, never misuse): on them, behaviour like
        # what was cleared needs a stronger opinion to alert again.
        self._cleared = frozenset(self.card.get("cleared_accounts", ()))
        self.cleared_threshold = float(self.card.get("cleared_threshold", 0.0))

    def familiar(self, X: np.ndarray) -> np.ndarray:
        """Whether each row lies near the windows analysts judged false positives: summed
        over inputs, how far (in log units) it is outside their range. A window unlike any
        rejected one (a new kind of incident, say) is never vetoed, whatever p says."""
        return box_distance(X, self._box_lo, self._box_hi) <= self.familiar_within

    def judge(
        self, batch: FeatureBatch, scores: dict[str, np.ndarray], rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(misuse), keep) for each of `rows` (indices into the batch): a row is vetoed
        when its probability is below the threshold and it resembles a rejected window."""
        if not len(rows):
            return np.zeros(0), np.zeros(0, dtype=bool)
        X = gate_inputs(batch, scores, rows, self.features, self.scored)
        (p,) = self.session.run([self._prob], {self._input: X})
        prob = np.asarray(p[:, 1], dtype=np.float64)
        need = np.full(len(rows), self.threshold)
        if self._cleared:
            known = [account_key(a) in self._cleared for a in batch.account_ids[rows].tolist()]
            need[np.array(known, dtype=bool)] = max(self.threshold, self.cleared_threshold)
        return prob, (prob >= need) | ~self.familiar(X)
