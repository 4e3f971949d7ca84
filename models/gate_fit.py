"""Fitting the verdict gate: a small gradient-boosted model on judged windows, its veto
threshold chosen on accounts it did not see, exported to ONNX and checked against itself.

Splits are grouped by account: every fold holds out whole accounts, so a window is never
judged by a model that saw another window of the same account. The threshold is chosen
on those out-of-fold probabilities so that the held-out misuse accounts keep an alert
(`keep_recall` of them, in every category), then halved: on traffic after the verdicts
the probabilities drift, and a missed incident costs more than a false alarm kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GateSettings:
    n_estimators: int = 100
    max_depth: int = 3
    learning_rate: float = 0.1
    subsample: float = 0.8
    folds: int = 4
    keep_recall: float = 1.0  # share of held-out misuse accounts per category that must pass
    margin: float = 0.5  # the threshold is this share of the highest one keeping them
    cap: float = 0.5  # never veto above even odds
    min_fp_accounts: int = 3  # fewer accounts judged false positive: the gate never vetoes
    # Log units (summed over inputs) a window may lie outside the range of the rejected
    # windows and still be vetoed; further out it is unlike anything analysts rejected.
    familiar_within: float = 2.0
    # On an account judged false positive (and never misuse), a window like the rejected
    # ones alerts again only above this probability.
    cleared_threshold: float = 0.9
    random_state: int = 0


def _model(s: GateSettings):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=s.n_estimators,
        max_depth=s.max_depth,
        learning_rate=s.learning_rate,
        subsample=s.subsample,
        random_state=s.random_state,
    )


def weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each account counts once whatever its number of windows, and both classes weigh
    the same in total: a long incident must not drown a short false alarm."""
    _, inv, per = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / per[inv]
    for c in (0, 1):
        m = y == c
        if m.any():
            w[m] *= len(y) / (2.0 * w[m].sum())
    return w


def fold_of(groups: np.ndarray, k: int) -> np.ndarray:
    """A fixed fold per account (sha256 of its id), the same on every run and machine."""
    return np.array(
        [int(hashlib.sha256(str(g).encode()).hexdigest()[:8], 16) % k for g in groups.tolist()]
    )


def out_of_fold(X: np.ndarray, y: np.ndarray, groups: np.ndarray, s: GateSettings) -> np.ndarray:
    """Each window's P(misuse) from a model that never saw its account, set to 1 where the
    window is unlike the false positives of the other folds (the gate would not veto it)."""
    from detectors.gate import box_distance

    k = max(2, min(s.folds, len(np.unique(groups))))
    fold = fold_of(groups, k)
    p = np.full(len(y), np.nan)
    for f in range(k):
        test, train = fold == f, fold != f
        if not test.any():
            continue
        if len(np.unique(y[train])) < 2:  # a fold with one class: this fold cannot say
            p[test] = 1.0
            continue
        m = _model(s)
        m.fit(X[train], y[train], sample_weight=weights(y[train], groups[train]))
        p[test] = m.predict_proba(X[test])[:, list(m.classes_).index(1)]
        fp = X[train & (y == 0)]
        far = box_distance(X[test], fp.min(axis=0), fp.max(axis=0)) > s.familiar_within
        p[np.flatnonzero(test)[far]] = 1.0
    return p


def choose_threshold(
    p: np.ndarray, y: np.ndarray, groups: np.ndarray, category: np.ndarray, s: GateSettings
) -> float:
    """The highest threshold that keeps `keep_recall` of misuse accounts of each category
    (an account is kept when one of its misuse windows passes), times the margin."""
    best = np.inf
    mis = y == 1
    for c in np.unique(category[mis]).tolist():
        rows = mis & (category == c)
        top = [float(np.max(p[rows & (groups == g)])) for g in np.unique(groups[rows]).tolist()]
        need = int(np.ceil(s.keep_recall * len(top)))
        best = min(best, sorted(top, reverse=True)[max(need - 1, 0)])
    if not np.isfinite(best):
        return 0.0
    return float(min(s.cap, s.margin * best))


def quality(p: np.ndarray, y: np.ndarray, groups: np.ndarray, t: float) -> dict:
    """What a threshold does on held-out windows: windows and accounts kept or vetoed."""
    keep = p >= t
    out: dict = {"threshold": round(t, 4)}
    for c, name in ((1, "misuse"), (0, "false_positive")):
        m = y == c
        accts = np.unique(groups[m])
        kept = [bool(keep[m & (groups == g)].any()) for g in accts.tolist()]
        out[name] = {
            "windows": int(m.sum()),
            "windows_kept": int((keep & m).sum()),
            "accounts": len(accts),
            "accounts_kept": int(sum(kept)),
        }
    return out


def fit_gate(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, category: np.ndarray, s: GateSettings
) -> tuple[object, float, dict]:
    """(fitted model, veto threshold, held-out report). The threshold is 0 (no veto) when
    too few accounts were judged false positive to learn what one looks like."""
    oof = out_of_fold(X, y, groups, s)
    t = choose_threshold(oof, y, groups, category, s)
    n_fp = len(np.unique(groups[y == 0]))
    report = {"method": f"out-of-fold, {s.folds} folds grouped by account"}
    report["at_threshold"] = quality(oof, y, groups, t)
    if n_fp < s.min_fp_accounts:
        report["inactive"] = (
            f"{n_fp} account(s) judged false positive, fewer than {s.min_fp_accounts}: "
            "the gate scores alerts but vetoes none"
        )
        t = 0.0
    model = _model(s)
    model.fit(X, y, sample_weight=weights(y, groups))
    return model, t, report


def export(model, X: np.ndarray) -> tuple[bytes, float]:
    """ONNX bytes and the largest probability difference to scikit-learn on `X`."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    onx = to_onnx(
        model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17
    )
    blob = onx.SerializeToString()
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    out = [o.name for o in sess.get_outputs() if "prob" in o.name][0]
    p = sess.run([out], {sess.get_inputs()[0].name: X.astype(np.float32)})[0]
    return blob, float(np.max(np.abs(p - model.predict_proba(X.astype(np.float32)))))
