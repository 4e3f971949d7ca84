"""NAB scoring: window-weighted rewards, one threshold per profile, normalised totals.

The rules follow the benchmark's definition:

* the first 15% of each file (never more than 750 rows) is probationary and not scored;
* a point inside a labelled window is worth `tpWeight * S(p) / S(-1)` where
  `S(p) = 2 * sigmoid(-5 p) - 1` and `p = -(right - i + 1) / width`, so the window's first
  point earns the full reward and the reward shrinks towards its right edge;
* only a window's best (i.e. earliest) detection counts; a window with none costs `fnWeight`;
* a detection outside every window costs `fpWeight * S(p)` where `p` is the distance past
  the previous window's right edge in units of that window's width (`-fpWeight` before any
  window or three widths after one);
* one threshold per profile is chosen over all files together to maximise the summed score;
* the result is `100 * (raw - null) / (perfect - null)`, where the null detector emits a
  constant score and the perfect one earns `tpWeight` per labelled window.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.core.problems import one_line

PROBATION_PERCENT = 0.15
PROFILE_KEYS = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

DEFAULT_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11},
}


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fn: float
    fp: float


@dataclass
class FileLabels:
    """One scored file: its anomaly scores and, per row, the reward a detection there earns."""

    name: str
    scores: np.ndarray  # float (n,)
    weight: np.ndarray  # float (n,): reward if detected, before the fn/fp split
    window: np.ndarray  # int (n,): window index within the file, -1 outside windows
    scorable: np.ndarray  # bool (n,): False inside the probationary period
    n_windows: int  # labelled windows, scorable or not


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float  # normalised, 0 = null detector, 100 = perfect detector
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows


class NabFileError(ValueError):
    """A NAB input (series CSV, windows or profiles file) that cannot be read: names it."""


# What reading a malformed NAB file raises, from the text up to the shape.
SHAPE_ERRORS = (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError, AttributeError)


def load_profiles(path: Path | None) -> list[Profile]:
    if path is None:
        data = {k: {"CostMatrix": v} for k, v in DEFAULT_PROFILES.items()}
    else:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except SHAPE_ERRORS as exc:
            raise NabFileError(f"{path}: not a profiles JSON file: {one_line(exc)}") from None
    out = []
    for name in PROFILE_KEYS:
        try:
            cm = data[name]["CostMatrix"]
            weights = float(cm["tpWeight"]), float(cm["fnWeight"]), float(cm["fpWeight"])
        except SHAPE_ERRORS as exc:
            raise NabFileError(
                f"{path}: profile {name} has no CostMatrix of tpWeight, fnWeight and fpWeight "
                f"({type(exc).__name__}: {one_line(exc)})"
            ) from None
        out.append(Profile(name, *weights))
    return out


def scaled_sigmoid(pos: np.ndarray | float) -> np.ndarray:
    pos = np.asarray(pos, dtype=np.float64)
    return np.where(pos >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    return int(min(math.floor(percent * n_rows), percent * 5000))


def window_indices(timestamps: np.ndarray, windows: list[tuple[np.datetime64, np.datetime64]]):
    """Row ranges [start, end] (inclusive) of each window: first row at or after its start,
    last row at or before its end. Windows holding no row are dropped."""
    ts = np.asarray(timestamps, dtype="datetime64[ms]")
    out = []
    for start, end in windows:
        lo = int(np.searchsorted(ts, np.datetime64(start, "ms"), side="left"))
        hi = int(np.searchsorted(ts, np.datetime64(end, "ms"), side="right")) - 1
        if hi >= lo:
            out.append((lo, hi))
    return out


def row_rewards(
    n: int, windows: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row unweighted reward: (tp_reward, fp_penalty, window_id).

    tp_reward is S(p)/S(-1) inside windows (0 outside); fp_penalty is S(p) outside windows
    (negative, 0 inside); window_id is -1 outside windows.
    """
    idx = np.arange(n)
    tp = np.zeros(n)
    fp = np.full(n, -1.0)
    wid = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (lo, hi) in enumerate(sorted(windows)):
        width = hi - lo + 1
        inside = idx[lo : hi + 1]
        tp[lo : hi + 1] = scaled_sigmoid(-(hi - inside + 1) / width) / max_tp
        fp[lo : hi + 1] = 0.0
        wid[lo : hi + 1] = k
        # Rows after this window, up to the next one, are measured from its right edge.
        nxt = [w[0] for w in windows if w[0] > hi]
        stop = min(nxt) if nxt else n
        after = idx[hi + 1 : stop]
        fp[hi + 1 : stop] = scaled_sigmoid(np.abs(hi - after) / max(width - 1, 1))
    return tp, fp, wid


def file_labels(name: str, scores: np.ndarray, windows: list[tuple[int, int]]) -> FileLabels:
    n = len(scores)
    tp, fp, wid = row_rewards(n, windows)
    scorable = np.arange(n) >= probation_length(n)
    weight = np.where(wid >= 0, tp, fp)
    return FileLabels(name, np.asarray(scores, float), weight, wid, scorable, len(windows))


def sweep(files: list[FileLabels], profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Total score at every candidate threshold, over all files together.

    Returns (thresholds, totals), thresholds descending, the first being "detect nothing".
    A row is detected when its score is >= the threshold.
    """
    s_parts, d_parts = [], []
    n_windows = 0
    for f in files:
        m = f.scorable
        s, w, wid = f.scores[m], f.weight[m], f.window[m]
        outside = wid < 0
        s_parts.append(s[outside])
        d_parts.append(profile.fp * w[outside])
        # Within a window, lowering the threshold only matters when it uncovers an earlier
        # (higher-reward) row than the best one so far.
        for k in np.unique(wid[~outside]):
            rows = wid == k
            ws, ww = s[rows], profile.tp * w[rows]
            order = np.argsort(-ws, kind="stable")
            ws, ww = ws[order], ww[order]
            best = np.maximum.accumulate(ww)
            prev = np.concatenate([[-profile.fn], best[:-1]])
            s_parts.append(ws)
            d_parts.append(best - prev)
            n_windows += 1
    s_all = np.concatenate(s_parts) if s_parts else np.zeros(0)
    d_all = np.concatenate(d_parts) if d_parts else np.zeros(0)
    base = -profile.fn * n_windows
    order = np.argsort(-s_all, kind="stable")
    s_sorted, total = s_all[order], base + np.cumsum(d_all[order])
    # The total at a threshold includes every row scored at or above it.
    last = np.ones(len(s_sorted), dtype=bool)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]
    thresholds = np.concatenate([[np.inf], s_sorted[last]])
    totals = np.concatenate([[base], total[last]])
    return thresholds, totals


def counts_at(files: list[FileLabels], threshold: float) -> tuple[int, int, int]:
    tp = fn = fp = 0
    for f in files:
        m = f.scorable
        det = f.scores[m] >= threshold
        wid = f.window[m]
        fp += int(np.sum(det & (wid < 0)))
        scored = np.unique(wid[wid >= 0])
        hit = np.unique(wid[det & (wid >= 0)])
        tp += len(hit)
        fn += len(scored) - len(hit)
    return tp, fn, fp


def null_score(files: list[FileLabels], profile: Profile) -> float:
    const = [
        FileLabels(f.name, np.full(len(f.scores), 0.5), f.weight, f.window, f.scorable, f.n_windows)
        for f in files
    ]
    return float(np.max(sweep(const, profile)[1]))


def score_profile(files: list[FileLabels], profile: Profile) -> ProfileResult:
    thresholds, totals = sweep(files, profile)
    best = int(np.argmax(totals))
    raw = float(totals[best])
    null = null_score(files, profile)
    perfect = profile.tp * sum(f.n_windows for f in files)
    span = perfect - null
    norm = 100.0 * (raw - null) / span if span > 0 else 0.0
    thr = float(thresholds[best])
    tp, fn, fp = counts_at(files, thr)
    return ProfileResult(profile.name, thr, raw, null, perfect, norm, tp, fn, fp)


def score_all(files: list[FileLabels], profiles: list[Profile]) -> list[ProfileResult]:
    return [score_profile(files, p) for p in profiles]
