"""The account-windows analysts judged, recomputed from the events by the engine itself.

The events are replayed through the same engine, detectors and fusion as `vigil replay`
with the parent model; fusion hands every window that crosses the alert threshold to the
classifier's gate, and here that gate is a recorder: it keeps the window's features and
every detector's score exactly as a trained gate will later see them (one function,
`detectors.gate.gate_inputs`, builds both). No second feature code exists.

A verdict covers its alert's window and the same account's windows during the cooldown
that followed it: those are the windows the alert stood for (fusion suppressed them as
the same ongoing incident), so the analyst's judgement applies to them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detectors.classifier import OOD_EXEMPT
from detectors.gate import SCORED, gate_inputs
from models.verdicts import Verdict
from streams.core.alerts import CATEGORIES
from streams.core.batch import FeatureBatch
from streams.core.config import VigilConfig
from streams.features.window import FEATURES
from streams.fusion.fuse import alert_id

# Features that grow with how long Vigil has watched an account, not with its behaviour:
# verdicts from the first hours of a deployment would teach the gate "young history means
# a false alarm". `day_tokens` measures behaviour (a day's use) and stays.
GATE_FEATURES = [f for f in FEATURES if f not in OOD_EXEMPT or f == "day_tokens"]


@dataclass
class Recorder:
    """Stands in for a gate during training: records, never vetoes."""

    features: list[str]
    accounts: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    ends: list[np.ndarray] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    threshold: float = 0.0
    version: str = "recorder"

    def judge(self, batch: FeatureBatch, scores: dict[str, np.ndarray], rows: np.ndarray) -> None:
        self.accounts.append(batch.account_ids[rows].astype(object))
        self.starts.append(batch.window_start[rows].astype(float))
        self.ends.append(batch.window_end[rows].astype(float))
        self.inputs.append(gate_inputs(batch, scores, rows, self.features))
        return None  # no judgement: fusion goes on as without a gate


@dataclass
class Rows:
    """Windows that crossed the alert threshold, with their verdict where one covers them."""

    X: np.ndarray
    account_ids: np.ndarray
    window_start: np.ndarray
    window_end: np.ndarray
    label: np.ndarray  # 1 misuse, 0 false positive, -1 no verdict
    category: np.ndarray  # the misuse verdict's category, "" otherwise
    matched: int  # verdicts found on a window
    unmatched: list[str]  # alert ids of verdicts found on no window


def record(events: list[Path], cfg: VigilConfig) -> Recorder:
    """Replay `events` (in order, one engine) with the config's model; record every window
    that reaches fusion's threshold."""
    from streams.engine.engine import Engine, build_detectors
    from streams.replay.reader import open_input, replay

    dets = build_detectors(cfg)
    clf = dets.get("classifier")
    if clf is None:
        raise ValueError("training from verdicts needs the classifier enabled in the config")
    rec = Recorder(GATE_FEATURES)
    clf.gate = rec  # type: ignore[attr-defined]
    engine = Engine(cfg, detectors=dets)
    for path in events:
        with open_input(str(path)) as fh:
            replay(engine, fh, sink=lambda out: None)
    return rec


def _place(verdicts: list[Verdict], acct: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Verdicts without a window (the CSV export) get the window whose alert id is theirs."""
    need = {v.alert_id: v for v in verdicts if v.window_end is None}
    if not need:
        return verdicts
    wanted = {v.account_id for v in need.values()}
    found: dict[str, tuple[float, float]] = {}
    for i in np.flatnonzero(np.isin(acct, list(wanted))).tolist():
        for c in CATEGORIES:
            aid = alert_id(str(acct[i]), float(end[i]), c)
            if aid in need:
                found[aid] = (float(start[i]), float(end[i]))
    return [
        dataclasses.replace(v, window_start=found[v.alert_id][0], window_end=found[v.alert_id][1])
        if v.alert_id in found
        else v
        for v in verdicts
    ]


def label_rows(rec: Recorder, verdicts: list[Verdict], cooldown_s: float) -> Rows:
    n_in = len(rec.features) + len(SCORED)
    X = np.vstack(rec.inputs) if rec.inputs else np.zeros((0, n_in), np.float32)
    acct = np.concatenate(rec.accounts) if rec.accounts else np.zeros(0, object)
    start = np.concatenate(rec.starts) if rec.starts else np.zeros(0)
    end = np.concatenate(rec.ends) if rec.ends else np.zeros(0)
    verdicts = _place(verdicts, acct, start, end)
    label = np.full(len(X), -1, dtype=np.int8)
    category = np.full(len(X), "", dtype=object)
    by_acct: dict[str, list[int]] = {}
    for i, a in enumerate(acct.tolist()):
        by_acct.setdefault(a, []).append(i)
    matched, unmatched = 0, []
    # False positives first, so a misuse verdict covering the same window wins.
    for v in sorted(verdicts, key=lambda v: v.verdict == "misuse"):
        rows = np.array(by_acct.get(v.account_id, []), dtype=int)
        if v.window_end is None or not len(rows) or not np.any(end[rows] == v.window_end):
            unmatched.append(v.alert_id)
            continue
        matched += 1
        if v.verdict == "needs_info":
            continue  # an open question is no label
        cover = rows[(end[rows] >= v.window_end) & (end[rows] < v.window_end + cooldown_s)]
        label[cover] = 1 if v.verdict == "misuse" else 0
        category[cover] = v.category if v.verdict == "misuse" else ""
    return Rows(X, acct, start, end, label, category, matched, unmatched)
