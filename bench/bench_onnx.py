"""Batched ONNX inference vs scikit-learn predict_proba on the same model, side by side.

Uses the shipped classifier (models/artifacts) and its scikit-learn original, on real
account-window feature rows from a generated corpus, at batch 1 and batch 1,000.

    python bench/bench_onnx.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.classifier import DEFAULT_MODEL, ClassifierDetector  # noqa: E402
from models.dataset import features_of  # noqa: E402
from synth.generate import generated  # noqa: E402


def per_call(fn, X: np.ndarray, batch: int, repeats: int) -> float:
    """Median seconds per call over `repeats` passes of up to 200 calls each."""
    calls = [X[i : i + batch] for i in range(0, min(len(X), 200 * batch), batch)]
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for c in calls:
            fn(c)
        out.append((time.perf_counter() - t) / len(calls))
    return float(np.median(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--providers", default="CPUExecutionProvider")
    args = ap.parse_args()
    clf = ClassifierDetector()
    if args.providers != "CPUExecutionProvider":
        import onnxruntime as ort

        clf.session = ort.InferenceSession(str(DEFAULT_MODEL), providers=args.providers.split(","))
    skl = pickle.loads(DEFAULT_MODEL.with_suffix(".skl.pkl").read_bytes())
    ds = features_of(*generated(Path("data/bench"), 300, 12, seed=77))
    X = np.nan_to_num(ds.X.astype(np.float32))
    while len(X) < 200_000:
        X = np.vstack([X, X])
    diff = np.abs(clf.probabilities(X[:5000]) - skl.predict_proba(X[:5000])).max()
    print(
        f"model {clf.version}; providers {clf.session.get_providers()}; max |p_onnx - p_sklearn| = {diff:.2e}"
    )
    print(
        f"{'batch':>6} {'threads':>8} {'sklearn s/call':>15} {'onnx s/call':>13} "
        f"{'speed-up':>9} {'onnx rows/s':>12}"
    )
    for threads in (1, 2):
        if args.providers == "CPUExecutionProvider":
            clf = ClassifierDetector(intra_op_threads=threads)
        for batch in (1, 1000):
            s = per_call(skl.predict_proba, X, batch, args.repeats)
            o = per_call(clf.probabilities, X, batch, args.repeats)
            print(
                f"{batch:>6} {threads:>8} {s:>15.6f} {o:>13.6f} {s / o:>8.1f}x {batch / o:>12,.0f}"
            )


if __name__ == "__main__":
    main()
