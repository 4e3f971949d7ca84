"""Transformed copies of a NAB corpus, for a robustness check without new data.

The hidden NAB categories differ from the shared ones in kind: heavier tails, bursty
counts. Without reading them, the nearest check is to make the shared files look more like
that and see whether held-out scores hold. Each transform keeps the timestamps and the
labelled windows and changes only the values, per file, deterministically:

* `scale`: values times 1,000 plus an offset of 10 magnitudes (units must not matter).
* `square`: (x - min)^2, a heavier right tail, the same order of events.
* `exp`: exp of the value standardised by its median and MAD, capped at e^8: a heavy,
  skewed tail of the kind machine metrics have.
* `bursts`: benign bursts added to 1% of the steps away from every window (1 to 3 steps,
  3 to 8 times the file's usual step-to-step change, upwards): a series whose bursts are
  its normal, like social-media counts. Detections on them count as false positives.

Nothing here is used to tune the detector; it only re-scores a protocol on altered data.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from detectors.nab import scoring

TRANSFORMS = ("scale", "square", "exp", "bursts")
BURST_SHARE = 0.01


def _robust_spread(x: np.ndarray) -> float:
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    return mad if mad > 0 else float(np.std(x)) or 1.0


def _bursts(x: np.ndarray, windows: list[tuple[int, int]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(x)
    step = float(np.median(np.abs(np.diff(x)))) if n > 1 else 0.0
    step = step if step > 0 else _robust_spread(x)
    free = np.ones(n, dtype=bool)
    for lo, hi in windows:
        # Keep clear of each window and of the stretch after it where NAB still discounts
        # false positives, so no injected burst is scored inside or next to an incident.
        width = hi - lo + 1
        free[max(lo - width, 0) : min(hi + 3 * width, n)] = False
    out = x.copy()
    starts = np.flatnonzero(free & (rng.random(n) < BURST_SHARE))
    for s in starts:
        length = int(rng.integers(1, 4))
        out[s : s + length] += rng.uniform(3.0, 8.0) * step
    return out


def transform_values(name: str, x: np.ndarray, windows: list[tuple[int, int]], kind: str):
    if kind == "scale":
        return x * 1000.0 + 10.0 * (np.abs(x).mean() * 1000.0 + 1.0)
    if kind == "square":
        return (x - x.min()) ** 2
    if kind == "exp":
        z = (x - np.median(x)) / _robust_spread(x)
        return np.exp(np.minimum(z, 8.0))
    if kind == "bursts":
        return _bursts(x, windows, zlib.crc32(name.encode()))
    raise ValueError(f"unknown transform {kind!r}; known: {', '.join(TRANSFORMS)}")


def transformed(corpus, kind: str):
    """A copy of a crossval.Corpus with every file's values transformed."""
    series = []
    for s in corpus.series:
        idx = scoring.window_indices(s.timestamps, corpus.windows.get(s.name, []))
        series.append(replace(s, values=transform_values(s.name, s.values, idx, kind)))
    return replace(corpus, series=series)


def held_out_under_transforms(
    corpus, report, make, base: dict, transforms=TRANSFORMS
) -> dict[str, dict[str, list[scoring.ProfileResult]]]:
    """Each fold's parameters (from `report`, a crossval.CvReport tuned on the untouched
    corpus) run on transformed copies: per transform, every fold's held-out score and the
    pooled score of all held-out files under one threshold. "none" is the untouched corpus."""
    from detectors.nab import crossval

    out: dict[str, dict[str, list[scoring.ProfileResult]]] = {}
    folds = {f.category: f for f in crossval.plan_folds(corpus)}
    for kind in ("none", *transforms):
        data = corpus if kind == "none" else transformed(corpus, kind)
        cache = crossval.ScoreCache(data, make, base)
        rows, pooled = {}, []
        for res in report.folds:
            files = cache.files(res.params)
            test = [files[k] for k in folds[res.category].test]
            pooled += test
            rows[res.category] = scoring.score_all(test, data.profiles)
        rows["pooled"] = scoring.score_all(pooled, data.profiles)
        out[kind] = rows
    return out


def format_table(table: dict[str, dict[str, list[scoring.ProfileResult]]]) -> list[str]:
    cats = list(next(iter(table.values())))
    head = f"{'transform':<10} " + " ".join(f"{c[:22]:>22}" for c in cats)
    lines = [head + "   (std / low FP / low FN)"]
    for kind, rows in table.items():
        cells = ["/".join(f"{r.score:.1f}" for r in rows[c]) for c in cats]
        lines.append(f"{kind:<10} " + " ".join(f"{c:>22}" for c in cells))
    return lines
