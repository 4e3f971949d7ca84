"""`vigil eval cross-source`: fit on one source of traffic, measure on another.

Every figure Vigil reports on its own generator flatters it: the detectors were tuned and
the classifier trained on that generator. What matters is how it does on traffic it was
not built on, so this evaluation replays a labelled corpus from another source and scores
the alerts with the definitions of the shared corpus scorer:

- a labelled account (a misuse actor, or a target attacked by someone else) is detected
  when it has an alert between its onset and two hours after its end;
- recall per scenario is detected labelled accounts over labelled accounts; an incident
  is detected when any of its accounts is;
- precision is TP / (TP + FP): TP counts labelled accounts alerted at or after onset, FP
  counts alerted unlabelled accounts and labelled accounts alerted before their onset;
- benign accounts alerted per 1,000 per day; time to detect is the first in-window alert
  minus onset; hard negatives are counted per type (alerted inside their window, or ever).

Truth comes in two forms: an external corpus's `truth.json` (`labels`, `incidents`,
`hard_negatives`, `period`) or the generator's `labels.json`; both are read into `Truth`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

GRACE_S = 2 * 3600.0
# External scenario names -> Vigil's categories, by keyword, for training on a source
# whose taxonomy differs. The first match wins.
CATEGORY_KEYWORDS = (
    ("stuffing", "credential_stuffing"),
    ("leak", "key_leak"),
    ("takeover", "key_leak"),
    ("distill", "distillation"),
    ("scrap", "distillation"),
    ("spam", "spam_campaign"),
    ("jailbreak", "jailbreak_probing"),
    ("farm", "free_tier_farming"),
    ("quota", "free_tier_farming"),
    ("ring", "free_tier_farming"),
)


def category_of(scenario: str) -> str | None:
    s = scenario.lower()
    return next((c for k, c in CATEGORY_KEYWORDS if k in s), None)


@dataclass
class Label:
    account_id: str
    scenario: str
    incident: str
    onset: float
    end: float


@dataclass
class Truth:
    start: float
    end: float
    labels: list[Label]
    benign: set[str]
    # hard-negative type -> [(account, window start, window end)]
    hard_negatives: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)

    @property
    def days(self) -> float:
        return (self.end - self.start) / 86_400


def _epoch(v: Any) -> float:
    if isinstance(v, int | float):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


_ACCOUNT = re.compile(rb'"account_id"\s*:\s*"([^"\\]*)"')


def accounts_in(events: Path) -> set[str]:
    """Every account id in an events file (.jsonl or .jsonl.gz), by a light scan."""
    from streams.replay.reader import open_input, read_chunks

    found: set[bytes] = set()
    rest = b""
    with open_input(str(events)) as fh:
        for block in read_chunks(fh, 1 << 24):  # a file it cannot read: UnreadableInput
            block = rest + block
            cut = block.rfind(b"\n") + 1  # a line split across blocks waits for the next
            found.update(_ACCOUNT.findall(block, 0, cut))
            rest = block[cut:]
    found.update(_ACCOUNT.findall(rest))
    return {a.decode() for a in found}


class TruthFileError(ValueError):
    """A truth file that holds no JSON object: the message names the file."""


def truth_object(path: Path) -> dict:
    """The truth file's JSON object."""
    t = orjson.loads(path.read_bytes())
    if not isinstance(t, dict):
        raise TruthFileError(
            f"{path}: not a truth file this command reads "
            f"(expected a JSON object, got {type(t).__name__})"
        )
    return t


def external_truth(path: Path, events: Path) -> Truth:
    t = truth_object(path)
    labels = [
        Label(
            x["account_id"],
            x["scenario"],
            x.get("incident_id") or x["account_id"],
            _epoch(x["onset"]),
            _epoch(x["end"]),
        )
        for x in t["labels"]
    ]
    labelled = {x.account_id for x in labels}
    hard: dict[str, list[tuple[str, float, float]]] = {}
    for h in t.get("hard_negatives", []):
        hard.setdefault(h["type"], []).append(
            (h["account_id"], _epoch(h["start"]), _epoch(h["end"]))
        )
    period = t["period"]
    return Truth(
        _epoch(period["start"]),
        _epoch(period["end"]),
        labels,
        accounts_in(events) - labelled,
        hard,
    )


def generator_truth(path: Path) -> Truth:
    t = truth_object(path)
    labels, benign = [], set()
    hard: dict[str, list[tuple[str, float, float]]] = {}
    for acct, x in t["accounts"].items():
        if x["label"] == "benign":
            benign.add(acct)
            if x.get("behaviour"):
                hard.setdefault(x["behaviour"], []).append((acct, t["start"], t["end"]))
            continue
        labels.append(Label(acct, x["label"], x.get("campaign") or acct, x["onset"], x["end"]))
    return Truth(t["start"], t["end"], labels, benign, hard)


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.quantile(xs, q)) if xs else None


def score(alerts: list[tuple[str, float]], truth: Truth) -> dict[str, Any]:
    """The shared scorer's figures for (account, event-time) alerts against `truth`."""
    times: dict[str, list[float]] = {}
    for acct, t in alerts:
        times.setdefault(acct, []).append(t)
    for v in times.values():
        v.sort()
    per: dict[str, dict[str, Any]] = {}
    incidents: dict[str, dict[str, bool]] = {}
    ttd_all: list[float] = []
    for lab in truth.labels:
        ts = times.get(lab.account_id, [])
        i = bisect.bisect_left(ts, lab.onset)
        hit = i < len(ts) and ts[i] <= lab.end + GRACE_S
        s = per.setdefault(lab.scenario, {"accounts": 0, "detected": 0, "ttd": []})
        s["accounts"] += 1
        if hit:
            s["detected"] += 1
            s["ttd"].append((ts[i] - lab.onset) / 60)
            ttd_all.append((ts[i] - lab.onset) / 60)
        inc = incidents.setdefault(lab.scenario, {})
        inc[lab.incident] = inc.get(lab.incident, False) or hit
    onset = {}
    for lab in truth.labels:
        onset[lab.account_id] = min(onset.get(lab.account_id, np.inf), lab.onset)
    tp = fp_early = fp_benign = 0
    for acct, ts in times.items():
        if acct in onset:
            after = len(ts) - bisect.bisect_left(ts, onset[acct])
            tp += after > 0
            fp_early += after < len(ts)
        elif acct in truth.benign:
            fp_benign += 1
    fp_other = sum(1 for a in times if a not in onset and a not in truth.benign)
    denom = tp + fp_early + fp_benign + fp_other
    scenarios = {
        k: {
            "accounts": s["accounts"],
            "recall": s["detected"] / s["accounts"],
            "incidents": len(incidents[k]),
            "incident_recall": sum(incidents[k].values()) / len(incidents[k]),
            "ttd_median_min": _pct(s["ttd"], 0.5),
        }
        for k, s in sorted(per.items())
    }
    hard = {}
    for kind, rows in sorted(truth.hard_negatives.items()):
        inside = sum(any(a <= t <= b for t in times.get(acct, [])) for acct, a, b in rows if acct)
        hard[kind] = {
            "accounts": len(rows),
            "alerted_in_window": inside,
            "alerted_any_time": sum(1 for acct, _, _ in rows if acct in times),
        }
    n_benign = max(len(truth.benign), 1)
    return {
        "precision": tp / denom if denom else None,
        "recall_macro": float(np.mean([s["recall"] for s in scenarios.values()]))
        if scenarios
        else None,
        "benign_alerted": fp_benign,
        "benign_accounts": len(truth.benign),
        "fp_benign_accounts_per_1k_per_day": 1000 * fp_benign / n_benign / truth.days,
        "ttd_median_min": _pct(ttd_all, 0.5),
        "ttd_p90_min": _pct(ttd_all, 0.9),
        "scenarios": scenarios,
        "hard_negatives": hard,
        "alerts": len(alerts),
    }


def run_alerts(events: Path, model_path: str = "", config=None) -> list[tuple[str, float]]:
    """Replay `events` through a fresh engine; (account, event time) of every alert."""
    import dataclasses

    from streams.core.config import VigilConfig
    from streams.engine.engine import Engine
    from streams.replay.reader import open_input, replay

    cfg = config or VigilConfig()
    if model_path:
        cfg = dataclasses.replace(cfg, model_path=model_path)
    engine = Engine(cfg)
    out: list[tuple[str, float]] = []
    with open_input(str(events)) as fh:
        replay(
            engine, fh, sink=lambda o: out.extend((a.account_id, _epoch(a.ts)) for a in o.alerts)
        )
    return out


def labels_for_training(truth_path: Path, events: Path, out: Path) -> Path:
    """Write an external truth as the generator's labels.json, scenarios mapped to Vigil's
    categories, so `models.dataset.features_of` can label its windows."""
    truth = external_truth(truth_path, events)
    accounts: dict[str, dict[str, Any]] = {a: {"label": "benign"} for a in truth.benign}
    for lab in truth.labels:
        cat = category_of(lab.scenario)
        if cat is None:
            continue  # a scenario Vigil has no category for is left out of training
        prev = accounts.get(lab.account_id)
        onset = min(lab.onset, prev["onset"]) if prev and "onset" in prev else lab.onset
        accounts[lab.account_id] = {"label": cat, "onset": onset, "end": lab.end}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps({"accounts": accounts}))
    return out


def print_score(name: str, s: dict[str, Any], echo=print) -> None:
    echo(f"== {name}")
    echo(
        f"{'scenario':<26}{'accounts':>9}{'recall':>8}{'incidents':>10}{'inc. recall':>12}{'TTD':>10}"
    )
    for k, v in s["scenarios"].items():
        ttd = f"{v['ttd_median_min']:.1f} min" if v["ttd_median_min"] is not None else "-"
        echo(
            f"{k:<26}{v['accounts']:>9}{v['recall']:>8.2f}{v['incidents']:>10}"
            f"{v['incident_recall']:>12.2f}{ttd:>10}"
        )
    p = s["precision"]
    ttd = s["ttd_median_min"]
    echo(
        f"precision {'-' if p is None else f'{p:.3f}'}; benign accounts alerted "
        f"{s['benign_alerted']}/{s['benign_accounts']} = "
        f"{s['fp_benign_accounts_per_1k_per_day']:.2f} per 1,000 per day; median time to detect "
        f"{'-' if ttd is None else f'{ttd:.1f} min'}; {s['alerts']} alerts"
    )
    if s["hard_negatives"]:
        echo(
            "hard negatives alerted in window (any time) / accounts: "
            + ", ".join(
                f"{k} {v['alerted_in_window']} ({v['alerted_any_time']})/{v['accounts']}"
                for k, v in s["hard_negatives"].items()
            )
        )


def run_cross_source(
    cfg,
    events: Path,
    truth_path: Path,
    data: Path,
    accounts: int,
    hours: float,
    seed: int,
    fit: bool,
    echo=print,
) -> dict[str, Any]:
    """The four measurements: each model on its own source and on the other one."""
    from models.dataset import features_of
    from models.train import ARTIFACTS, TrainConfig, fit_export
    from synth.generate import generated

    ext = external_truth(truth_path, events)
    gen_events, gen_labels = generated(data, accounts, hours, seed)
    gen = generator_truth(gen_labels)
    shipped = cfg.model_path or str(ARTIFACTS / "classifier.onnx")
    res: dict[str, Any] = {"sources": {"other": str(events), "generator_seed": seed}}
    runs = [("generator -> other (shipped model, held-out source)", events, ext, shipped)]
    runs.append(("generator -> generator (shipped model, same source)", gen_events, gen, shipped))
    if fit:
        echo(f"training a classifier on {events} (labels mapped by keyword to categories)")
        model_dir = data / "fitted-on-other"
        labels = labels_for_training(truth_path, events, data / "other-labels.json")
        other = features_of(events, labels, cfg)
        hold = features_of(gen_events, gen_labels, cfg)
        sources = {"sources": [str(events)]}
        fit_export(
            [other],
            hold,
            f"generator seed {seed}",
            sources,
            TrainConfig(),
            model_dir,
            log=echo,
            strict=False,
        )
        fitted = str(model_dir / "classifier.onnx")
        runs.append(
            ("other -> generator (model fitted on the other source)", gen_events, gen, fitted)
        )
        runs.append(("other -> other (model fitted on it, same source)", events, ext, fitted))
    for name, ev, truth, model in runs:
        s = score(run_alerts(ev, model, cfg), truth)
        print_score(name, s, echo)
        res[name] = s
    return res
