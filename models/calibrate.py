"""`vigil calibrate`: per-category thresholds that keep benign alerts within a budget.

One replay records every alert candidate (streams/fusion/candidates.py); thresholds are
then chosen from the recorded scores, and the final choice is checked by one real replay.

What counts against the budget: every alert that is not on an account confirmed misuse.
Confirmed misuse is a `misuse` verdict on the account (`--verdicts`) or, with ground truth
(`--labels`), an alert inside the account's labelled misuse period. With neither, every
alert counts: the budget is then an upper bound on benign alerts.
The budget is in benign alerts per 1,000 accounts per day, accounts being those active in
the recent traffic the budget is measured on.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from detectors.base import Detector
from streams.core.alerts import CATEGORIES, Alert
from streams.core.config import FusionConfig, VigilConfig
from streams.engine.engine import Engine, build_detectors
from streams.fusion.candidates import Candidates, alerts_at, record, thresholds_vector
from streams.replay.reader import open_input, read_batches
from streams.replay.warm import warm_engine

GRACE_S = 2 * 3600  # detection window past a labelled end (../shared/corpora README)


def _epoch(ts: str | float) -> float:
    if isinstance(ts, int | float):
        return float(ts)
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@dataclass
class Truth:
    """Labelled misuse: account -> (scenario, from, until), epoch seconds."""

    misuse: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    verdict_misuse: set[str] = field(default_factory=set)


def load_truth(path: Path) -> dict[str, tuple[str, float, float]]:
    """The generator's labels.json (`accounts`) or a corpus truth.json (`labels`). Raises
    ValueError naming the file for anything else."""
    try:
        d = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    out: dict[str, tuple[str, float, float]] = {}
    try:
        if isinstance(d, dict) and isinstance(d.get("accounts"), dict):
            for acct, lab in d["accounts"].items():
                if lab.get("label", "benign") != "benign":
                    out[acct] = (lab["label"], float(lab["onset"]), np.inf)
        elif isinstance(d, dict) and isinstance(d.get("labels"), list):
            for lab in d["labels"]:
                until = _epoch(lab["end"]) + GRACE_S
                out[lab["account_id"]] = (lab["scenario"], _epoch(lab["onset"]), until)
        else:
            raise ValueError(f"{path}: neither a generator labels.json nor a truth.json")
    except KeyError as exc:
        raise ValueError(f"{path}: a label without {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: a label of the wrong shape ({exc})") from None
    return out


def load_verdicts(paths: list[Path]) -> dict[str, str]:
    """Account -> its verdict: console labels JSON Lines or the labels CSV export. An
    account with any misuse verdict is misuse; else its latest verdict stands."""
    out: dict[str, str] = {}
    for p in paths:
        if p.suffix == ".csv":
            with open(p, newline="") as fh:
                rows = list(csv.DictReader(fh))
        else:
            rows = []
            for i, ln in enumerate(p.read_bytes().splitlines(), 1):
                try:
                    rows.append(orjson.loads(ln) if ln.strip() else None)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{p}:{i}: not JSON ({exc})") from None
        for i, r in enumerate(rows, 1):
            if r is None:  # a blank line
                continue
            if not isinstance(r, dict) or "account_id" not in r or "verdict" not in r:
                raise ValueError(f"{p}:{i}: a verdict needs account_id and verdict")
            if r["verdict"] not in ("misuse", "false_positive", "needs_info"):
                raise ValueError(f"{p}:{i}: unknown verdict {r['verdict']!r}")
            if out.get(r["account_id"]) != "misuse":
                out[r["account_id"]] = r["verdict"]
    return out


@dataclass
class Recording:
    cand: dict[str, np.ndarray]
    accounts: int  # active in the recorded period
    days: float
    since: float


def record_candidates(
    cfg: VigilConfig,
    paths: list[str],
    floor: float,
    recent_s: float | None = None,
    detectors: dict[str, Detector] | None = None,
) -> Recording:
    """One replay; candidates and active accounts of windows ending after the cut (the
    last `recent_s` of event time; everything before only warms the detectors)."""
    dets = detectors if detectors is not None else build_detectors(cfg)
    cand = Candidates()
    seen: dict[str, float] = {}  # account -> last window end
    bounds = [np.inf, -np.inf]

    def on_scores(batch, scores) -> None:  # type: ignore[no-untyped-def]
        end = float(batch.window_end[0]) if len(batch) else -np.inf
        bounds[0], bounds[1] = min(bounds[0], end - cfg.engine.window_s), max(bounds[1], end)
        for a in batch.account_ids.tolist():
            seen[str(a)] = end
        record(cand, batch, scores, dets, cfg.fusion, floor)

    engine, _ = warm_engine(cfg, paths, dets, on_scores)
    engine.flush()
    since = bounds[0] if recent_s is None else bounds[1] - recent_s
    # Every candidate is kept: an alert before the cut still holds the account's cooldown
    # after it. Only alerts after the cut are counted.
    arr = cand.arrays()
    active = sum(1 for t in seen.values() if t > since)
    return Recording(arr, active, (bounds[1] - max(since, bounds[0])) / 86_400, since)


@dataclass
class Outcome:
    alerts: int
    benign_alerts: int
    benign_per_1k_day: float  # benign alerts per 1,000 active accounts per day
    benign_accounts_per_1k_day: float
    recall: dict[str, float]  # per scenario, labelled accounts detected in their period
    macro_recall: float
    verdict_recall: float  # misuse-verdict accounts still alerted

    def line(self) -> str:
        return (
            f"{self.alerts} alerts, {self.benign_alerts} benign = "
            f"{self.benign_per_1k_day:.2f} per 1,000 accounts per day "
            f"({self.benign_accounts_per_1k_day:.2f} benign accounts); "
            f"macro recall {self.macro_recall:.3f}, misuse-verdict recall {self.verdict_recall:.3f}"
        )


def confirmed(account: np.ndarray, ts: np.ndarray, truth: Truth) -> np.ndarray:
    out = np.zeros(len(account), dtype=bool)
    for j, (a, t) in enumerate(zip(account.tolist(), ts.tolist(), strict=True)):
        lab = truth.misuse.get(a)
        out[j] = a in truth.verdict_misuse or (lab is not None and lab[1] <= t <= lab[2])
    return out


def outcome(
    account: np.ndarray, ts: np.ndarray, ok: np.ndarray, truth: Truth, rec: Recording
) -> Outcome:
    """Figures of a set of alerts (account, ts) whose `ok` marks confirmed misuse."""
    scale = 1000 / max(rec.accounts, 1) / max(rec.days, 1e-9)
    benign = int((~ok).sum())
    hit = set(account[ok].tolist())
    per: dict[str, list[int]] = {}
    for a, (scen, _start, until) in truth.misuse.items():
        if until > rec.since:  # misuse still going on in the recent traffic
            per.setdefault(scen, [0, 0])
            per[scen][0] += 1
            per[scen][1] += a in hit
    recall = {k: v[1] / v[0] for k, v in sorted(per.items())}
    alerted = set(account.tolist())
    vm = truth.verdict_misuse
    return Outcome(
        alerts=len(account),
        benign_alerts=benign,
        benign_per_1k_day=benign * scale,
        benign_accounts_per_1k_day=len(set(account[~ok].tolist())) * scale,
        recall=recall,
        macro_recall=float(np.mean(list(recall.values()))) if recall else float("nan"),
        verdict_recall=len(vm & alerted) / len(vm) if vm else float("nan"),
    )


def simulate(
    rec: Recording,
    ok: np.ndarray,
    thr: np.ndarray,
    min_sev: np.ndarray,
    cooldown_s: float,
    truth: Truth,
) -> Outcome:
    kept = alerts_at(rec.cand, thr, min_sev, cooldown_s)
    kept = kept[rec.cand["ts"][kept] > rec.since]
    return outcome(rec.cand["account"][kept], rec.cand["ts"][kept], ok[kept], truth, rec)


def at(rec: Recording, truth: Truth, fusion: FusionConfig) -> Outcome:
    """The figures `fusion`'s thresholds give on the recording."""
    ok = confirmed(rec.cand["account"], rec.cand["ts"], truth)
    return simulate(rec, ok, *thresholds_vector(fusion), fusion.cooldown_s, truth)


def choose(
    rec: Recording,
    truth: Truth,
    budget: float,
    base: FusionConfig,
    floor: float,
    step: float = 0.01,
) -> tuple[FusionConfig, Outcome]:
    """Greedy: from `floor` everywhere, raise the category threshold that removes the most
    benign alerts per unit of macro recall lost, until the budget is met or nothing helps."""
    ok = confirmed(rec.cand["account"], rec.cand["ts"], truth)
    _, min_sev = thresholds_vector(base)
    thr = np.full(len(CATEGORIES), floor)
    cat, fused = rec.cand["category"], rec.cand["fused"]
    recent = rec.cand["ts"] > rec.since

    def run(t: np.ndarray) -> Outcome:
        return simulate(rec, ok, t, min_sev, base.cooldown_s, truth)

    now = run(thr)
    while now.benign_per_1k_day > budget:
        best: tuple[float, float, np.ndarray, Outcome] | None = None
        for c in range(len(CATEGORIES)):
            benign_here = fused[(cat == c) & ~ok & (fused >= thr[c]) & recent]
            if not len(benign_here) or thr[c] >= 1.0:
                continue
            # Just past the lowest benign candidate still alerting; further if that frees
            # a repeat the cooldown held back (no fewer benign alerts), a few steps at most.
            steps = np.unique(np.minimum(1.0, np.floor(benign_here / step + 1e-9) * step + step))
            for t in steps[:5].tolist():
                nxt = thr.copy()
                nxt[c] = t
                out = run(nxt)
                gain = now.benign_alerts - out.benign_alerts
                if gain > 0:
                    break
            if gain <= 0:
                continue
            loss = max(0.0, _nan0(now.macro_recall) - _nan0(out.macro_recall))
            loss += max(0.0, _nan0(now.verdict_recall) - _nan0(out.verdict_recall))
            key = (loss / gain, -gain)
            if best is None or key < (best[0], best[1]):
                best = (key[0], key[1], nxt, out)
        if best is None:
            break
        thr, now = best[2], best[3]
    chosen = {c: round(float(t), 4) for c, t in zip(CATEGORIES, thr, strict=True)}
    return dataclasses.replace(base, thresholds=chosen), now


def _nan0(x: float) -> float:
    return 0.0 if np.isnan(x) else x


def verify(
    cfg: VigilConfig, paths: list[str], rec: Recording, truth: Truth, classifier: bool = True
) -> tuple[Outcome, list[Alert]]:
    """One real replay with `cfg`, its alerts after the recording's cut scored the same way."""
    engine = Engine(cfg, detectors=build_detectors(cfg, classifier=classifier))
    alerts: list[Alert] = []
    for p in paths:
        with open_input(p) as fh:
            for lines in read_batches(fh, read_ahead=True, max_line=cfg.engine.max_line_bytes):
                alerts += engine.process_lines(lines).alerts
    alerts += engine.flush().alerts
    recent = [a for a in alerts if _epoch(a.ts) > rec.since]
    account = np.asarray([a.account_id for a in recent], dtype=object)
    ts = np.asarray([_epoch(a.ts) for a in recent])
    return outcome(account, ts, confirmed(account, ts, truth), truth, rec), recent


def report(echo: Callable[[str], None], label: str, o: Outcome) -> None:
    echo(f"{label}: {o.line()}")
    if o.recall:
        echo("  recall: " + ", ".join(f"{k} {v:.2f}" for k, v in o.recall.items()))
