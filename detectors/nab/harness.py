"""Stream NAB-style CSV files through the series detector and score the results.

Each file is one series (one slot). Rows go in in time order with no look-ahead; files are
advanced in lockstep, one row per file per call, which is equivalent to feeding each file
on its own because the detector keeps its state per slot.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.nab.scoring import (
    SHAPE_ERRORS,
    FileLabels,
    NabFileError,
    file_labels,
    window_indices,
)
from streams.core.problems import one_line


@dataclass
class Series:
    name: str  # path relative to the data root, with "/" separators
    timestamps: np.ndarray  # datetime64[s]
    values: np.ndarray  # float64


def _parse_times(raw: list[str]) -> np.ndarray:
    return np.array([t.strip().replace(" ", "T") for t in raw], dtype="datetime64[ms]")


def read_series(path: Path, name: str) -> Series:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], [r for r in rows[1:] if r]
        ti, vi = header.index("timestamp"), header.index("value")
        ts = _parse_times([r[ti] for r in body])
        vals = np.array([float(r[vi]) for r in body], dtype=np.float64)
    except SHAPE_ERRORS as exc:
        raise NabFileError(
            f"{path}: not a CSV of timestamp and value ({type(exc).__name__}: {one_line(exc)})"
        ) from None
    return Series(name, ts.astype("datetime64[s]"), vals)


def find_csvs(root: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(root).as_posix(), p) for p in sorted(Path(root).rglob("*.csv"))]


def load_dir(root: Path) -> list[Series]:
    return [read_series(p, name) for name, p in find_csvs(root)]


def load_windows(path: Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return {k: [tuple(_parse_times(w)) for w in v] for k, v in raw.items()}
    except SHAPE_ERRORS as exc:
        raise NabFileError(
            f"{path}: not a windows file (file name -> list of [start, end]): "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from None


def label_column(series: Series, windows: list) -> np.ndarray:
    lab = np.zeros(len(series.values), dtype=np.int64)
    for lo, hi in window_indices(series.timestamps, windows):
        lab[lo : hi + 1] = 1
    return lab


def run_detector(series: list[Series], detector) -> list[np.ndarray]:
    """Anomaly score per row of every series; series k uses slot k."""
    detector.ensure_capacity(len(series))
    detector.reset_slots(np.arange(len(series)))
    lengths = np.array([len(s.values) for s in series])
    steps = int(lengths.max()) if len(series) else 0
    vals = np.zeros((len(series), steps))
    secs = np.zeros((len(series), steps))
    for k, s in enumerate(series):
        vals[k, : lengths[k]] = s.values
        secs[k, : lengths[k]] = s.timestamps.astype("datetime64[s]").astype(np.float64)
    out = np.zeros((len(series), steps))
    slots_all = np.arange(len(series))
    for t in range(steps):
        live = slots_all[lengths > t]
        sc = detector.score_learn(live, secs[live, t], vals[live, t][:, None])
        out[live, t] = sc[:, 0] if sc.ndim == 2 else sc
    return [out[k, : lengths[k]] for k in range(len(series))]


def write_results(out_root: Path, series: Series, scores: np.ndarray, labels: np.ndarray) -> None:
    path = Path(out_root) / series.name
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = np.datetime_as_string(series.timestamps, unit="s")
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for t, v, s, lab in zip(stamps, series.values, scores, labels, strict=True):
            w.writerow([t.replace("T", " "), repr(float(v)), f"{float(s):.8f}", int(lab)])


def read_results(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(timestamps, anomaly_score, label or None) from a results CSV."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], [r for r in rows[1:] if r]
    ts = _parse_times([r[header.index("timestamp")] for r in body]).astype("datetime64[s]")
    sc = np.array([float(r[header.index("anomaly_score")]) for r in body])
    lab = None
    if "label" in header:
        lab = np.array([int(float(r[header.index("label")])) for r in body])
    return ts, sc, lab


def runs_of_ones(label: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[0], (label > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def match_label_key(name: str, keys: set[str]) -> str | None:
    """Label key for a results file; tolerates a `<detector>_` prefix on the file name."""
    if name in keys:
        return name
    folder, _, base = name.rpartition("/")
    for key in keys:
        kfolder, _, kbase = key.rpartition("/")
        if kfolder == folder and base.endswith("_" + kbase):
            return key
    return None


def labels_for_results(
    out_root: Path, windows: dict[str, list] | None
) -> tuple[list[FileLabels], list[str]]:
    """Scoring input for every results CSV under out_root, plus names that had no labels."""
    files, missing = [], []
    keys = set(windows) if windows is not None else set()
    for name, path in find_csvs(out_root):
        ts, sc, lab = read_results(path)
        if windows is not None:
            key = match_label_key(name, keys)
            if key is None:
                missing.append(name)
                continue
            idx = window_indices(ts, windows[key])
        elif lab is not None:
            idx = runs_of_ones(lab)
        else:
            missing.append(name)
            continue
        files.append(file_labels(name, sc, idx))
    return files, missing
