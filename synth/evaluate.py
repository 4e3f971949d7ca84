"""Account-level quality against generated ground truth: recall, precision, time-to-detect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from streams.core.alerts import Alert
from streams.core.config import VigilConfig
from synth.scenarios import CATEGORY


@dataclass
class ScenarioStats:
    accounts: int = 0
    detected: int = 0
    right_category: int = 0
    ttd_s: list[float] = field(default_factory=list)
    # Accounts alerted with this category, and how many of them really are this scenario.
    alerted_as: int = 0
    alerted_as_right: int = 0

    @property
    def precision(self) -> float:
        return self.alerted_as_right / self.alerted_as if self.alerted_as else float("nan")

    @property
    def recall(self) -> float:
        return self.detected / self.accounts if self.accounts else float("nan")


@dataclass
class Quality:
    scenarios: dict[str, ScenarioStats]
    benign_accounts: int
    benign_alerted: int
    misuse_alerted: int
    days: float
    alerts: int
    events: int = 0
    seconds: float = 0.0
    # benign behaviour -> (accounts, alerted): the hard negatives, per kind
    hard_negatives: dict[str, list[int]] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        total = self.misuse_alerted + self.benign_alerted
        return self.misuse_alerted / total if total else float("nan")

    @property
    def benign_per_1000_per_day(self) -> float:
        return 1000 * self.benign_alerted / max(self.benign_accounts, 1) / max(self.days, 1e-9)

    @property
    def base_rate(self) -> float:
        misuse = sum(s.accounts for s in self.scenarios.values())
        return misuse / max(misuse + self.benign_accounts, 1)

    @property
    def median_ttd_s(self) -> float:
        all_ttd = [t for s in self.scenarios.values() for t in s.ttd_s]
        return float(np.median(all_ttd)) if all_ttd else float("nan")

    def to_dict(self) -> dict:
        return {
            "scenarios": {
                k: {
                    "accounts": s.accounts,
                    "recall": s.recall,
                    "precision": s.precision,
                    "category_accuracy": s.right_category / max(s.detected, 1),
                    "median_ttd_s": float(np.median(s.ttd_s)) if s.ttd_s else None,
                }
                for k, s in self.scenarios.items()
            },
            "precision": self.precision,
            "benign_alerted_per_1000_per_day": self.benign_per_1000_per_day,
            "base_rate": self.base_rate,
            "median_ttd_s": self.median_ttd_s,
            "alerts": self.alerts,
            "hard_negatives": {
                k: {"accounts": v[0], "alerted": v[1]} for k, v in self.hard_negatives.items()
            },
        }


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def labels_problem(labels: object) -> str | None:
    """What keeps `labels` from being the ground truth `vigil generate` writes, or None:
    checked before a run, which would otherwise fail only once it had scored everything."""
    if not isinstance(labels, dict):
        return f"expected a JSON object, got {type(labels).__name__}"
    for key in ("start", "end"):
        if not isinstance(labels.get(key), int | float):
            return f"{key!r} is missing or not a number"
    accounts = labels.get("accounts")
    if not isinstance(accounts, dict):
        return "'accounts' is missing or not an object"
    for acct, lab in accounts.items():
        if not isinstance(lab, dict) or not isinstance(lab.get("label"), str):
            return f"account {acct!r} has no 'label'"
        if lab["label"] != "benign" and not isinstance(lab.get("onset"), int | float):
            return f"account {acct!r} is {lab['label']} without a numeric 'onset'"
    return None


def score_alerts(alerts: list[Alert], labels: dict) -> Quality:
    accounts: dict[str, dict] = labels["accounts"]
    days = (labels["end"] - labels["start"]) / 86_400
    by_account: dict[str, list[Alert]] = {}
    for a in alerts:
        by_account.setdefault(a.account_id, []).append(a)
    scenarios: dict[str, ScenarioStats] = {}
    benign = benign_alerted = misuse_alerted = 0
    hard: dict[str, list[int]] = {}
    for acct, lab in accounts.items():
        mine = sorted(by_account.get(acct, []), key=lambda a: a.ts)
        if lab["label"] == "benign":
            benign += 1
            benign_alerted += bool(mine)
            if lab.get("behaviour"):
                h = hard.setdefault(lab["behaviour"], [0, 0])
                h[0] += 1
                h[1] += bool(mine)
            continue
        st = scenarios.setdefault(lab["label"], ScenarioStats())
        st.accounts += 1
        after = [a for a in mine if _epoch(a.ts) >= lab["onset"]]
        if after:
            st.detected += 1
            misuse_alerted += 1
            st.ttd_s.append(_epoch(after[0].ts) - lab["onset"])
            want = CATEGORY.get(lab["label"], lab["label"])
            st.right_category += any(a.category == want for a in after)
        elif mine:
            benign_alerted += 1  # alerted, but only before the misuse began
    for acct, mine in by_account.items():
        truth = accounts.get(acct, {}).get("label", "benign")
        for cat in {a.category for a in mine}:
            if cat in scenarios:
                scenarios[cat].alerted_as += 1
                scenarios[cat].alerted_as_right += cat == CATEGORY.get(truth, truth)
    q = Quality(scenarios, benign, benign_alerted, misuse_alerted, days, len(alerts))
    q.hard_negatives = dict(sorted(hard.items()))
    return q


def evaluate_scenarios(
    cfg: VigilConfig, data: Path, accounts: int, hours: float, seed: int
) -> Quality:
    import time

    from streams.engine.engine import Engine
    from streams.replay.reader import open_input, replay
    from synth.generate import generated

    events, labels_path = generated(data, accounts, hours, seed)
    engine = Engine(cfg)
    alerts: list[Alert] = []
    t = time.perf_counter()
    with open_input(str(events)) as fh:
        summary = replay(engine, fh, sink=lambda out: alerts.extend(out.alerts))
    q = score_alerts(alerts, orjson.loads(labels_path.read_bytes()))
    q.events, q.seconds = summary.lines, time.perf_counter() - t
    return q


def print_report(q: Quality, echo=print) -> None:
    echo(
        f"{'scenario':<22}{'accounts':>9}{'recall':>8}{'precision':>11}{'category':>10}"
        f"{'median TTD':>12}"
    )
    for name, s in sorted(q.scenarios.items()):
        ttd = f"{np.median(s.ttd_s) / 60:.1f} min" if s.ttd_s else "-"
        cat = s.right_category / max(s.detected, 1)
        echo(f"{name:<22}{s.accounts:>9}{s.recall:>8.2f}{s.precision:>11.2f}{cat:>10.2f}{ttd:>12}")
    echo(
        "recall: share of the scenario's accounts alerted after onset; precision: share of "
        "accounts alerted with that category that are that scenario; category: share of "
        "detected accounts whose alerts name the scenario"
    )
    echo(
        f"account-level precision {q.precision:.3f} at misuse base rate {q.base_rate:.2%}; "
        f"benign accounts alerted {q.benign_alerted}/{q.benign_accounts} "
        f"= {q.benign_per_1000_per_day:.2f} per 1,000 per day; "
        f"median time-to-detect {q.median_ttd_s / 60:.1f} min; {q.alerts} alerts"
    )
    if q.hard_negatives:
        echo(
            "hard negatives (benign accounts alerted / accounts): "
            + ", ".join(f"{k} {a}/{n}" for k, (n, a) in q.hard_negatives.items())
        )
    if q.events:
        echo(
            f"{q.events:,} events in {q.seconds:.1f} s ({q.events / max(q.seconds, 1e-9):,.0f} events/s)"
        )
