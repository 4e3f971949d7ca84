"""`vigil backtest`: two models over the same events in one replay, and what changed.

The champion runs as the engine's model and the challenger as its shadow
(streams/engine/shadow.py): one pass of the replay path, the same features and the same
other detectors for both, so every difference in the alerts is the model's. The diff
counts alerts gained and lost per category and severity (an alert is the same alert when
its id is: account, window and category), judges alerts against analyst verdicts where
there are any, and lists the accounts whose alerts changed.

An alert is judged by the verdict on that alert id, else by the latest verdict on its
account (an account confirmed benign makes every alert on it a false positive); a
needs_info verdict judges nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from streams.core.alerts import SEVERITIES, Alert
from streams.core.batch import FeatureBatch
from streams.core.config import VigilConfig
from streams.engine.engine import Output, build_detectors
from streams.engine.shadow import Agreement, Shadow, build_shadow
from streams.replay.runner import ReplayJob, run_replay

JUDGING = ("misuse", "false_positive")
SEV_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


class VerdictError(ValueError):
    """A verdicts file this command cannot read; the message names the line."""


@dataclass
class Verdicts:
    by_alert: dict[str, str] = field(default_factory=dict)
    by_account: dict[str, str] = field(default_factory=dict)  # the latest per account
    count: int = 0

    def judge(self, alert: dict) -> str | None:
        v = self.by_alert.get(alert["alert_id"]) or self.by_account.get(alert["account_id"])
        return v if v in JUDGING else None


def read_verdicts(path: Path) -> Verdicts:
    """The console's labels JSON Lines (docs/console.md), in the order they were given."""
    out = Verdicts()
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                alert_id, account, verdict = rec.get("alert_id"), rec["account_id"], rec["verdict"]
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise VerdictError(
                    f"{path}:{n}: not a verdict (one JSON object with account_id and verdict)"
                ) from None
            if verdict not in (*JUDGING, "needs_info"):
                raise VerdictError(f"{path}:{n}: unknown verdict {verdict!r}")
            if alert_id:
                out.by_alert[str(alert_id)] = verdict
            out.by_account[str(account)] = verdict
            out.count += 1
    return out


@dataclass
class Traffic:
    """The accounts scored and the event time covered: the denominators of alert rates."""

    accounts: set[str] = field(default_factory=set)
    start: float = np.inf
    end: float = -np.inf

    def add(self, batch: FeatureBatch) -> None:
        if len(batch):
            self.accounts.update(batch.account_ids.tolist())
            self.start = min(self.start, float(batch.window_start.min()))
            self.end = max(self.end, float(batch.window_end.max()))

    @property
    def days(self) -> float:
        return max(self.end - self.start, 0.0) / 86_400 if self.end > self.start else 0.0


@dataclass
class Run:
    champion: list[Alert]
    challenger: list[Alert]
    agreement: Agreement
    traffic: Traffic
    champion_version: str
    challenger_version: str


class Recorder:
    """A sink keeping both models' alerts and the traffic they saw, for a diff."""

    def __init__(self) -> None:
        self.champion: list[Alert] = []
        self.challenger: list[Alert] = []
        self.traffic = Traffic()

    def write(self, out: Output) -> None:
        self.champion.extend(out.alerts)
        self.challenger.extend(out.shadow_alerts)

    def close(self) -> None:
        pass

    def run(self, shadow: Shadow, champion_version: str) -> Run:
        return Run(
            self.champion,
            self.challenger,
            shadow.agreement,
            self.traffic,
            champion_version,
            shadow.version,
        )


def run_both(cfg: VigilConfig, events: str, champion_file: str, challenger_file: str) -> Run:
    """One replay of `events`: the champion as the model, the challenger as its shadow."""
    detectors = build_detectors(dataclasses.replace(cfg, model_path=champion_file))
    shadow = build_shadow(cfg, challenger_file)
    rec = Recorder()
    job = ReplayJob(
        config=cfg,
        path=events,
        sinks=[rec],
        detectors=detectors,
        shadow=shadow,
        on_features=rec.traffic.add,
    )
    run_replay(job, echo=lambda _: None)
    return rec.run(shadow, str(getattr(detectors.get("classifier"), "version", "none")))


def _rate(benign: int, accounts: int, days: float) -> float | None:
    if not accounts or days <= 0:
        return None
    return round(benign / accounts * 1000 / days, 3)


def _side(alerts: list[dict], verdicts: Verdicts | None, traffic: Traffic) -> dict:
    judged = Counter(verdicts.judge(a) for a in alerts) if verdicts else Counter()
    known = judged["misuse"] + judged["false_positive"]
    return {
        "alerts": len(alerts),
        "accounts": len({a["account_id"] for a in alerts}),
        "judged": known,
        "misuse": judged["misuse"],
        "false_positive": judged["false_positive"],
        "precision": round(judged["misuse"] / known, 4) if known else None,
        # Without verdicts nothing is known benign: no rate, rather than a rate of zero.
        "benign_per_1000_per_day": _rate(
            judged["false_positive"], len(traffic.accounts), traffic.days
        )
        if verdicts
        else None,
    }


def _table(
    a: dict[str, dict],
    b: dict[str, dict],
    key: Callable[[dict], str],
    verdicts: Verdicts | None,
    order: Callable[[str], object] | None = None,
) -> list[dict]:
    """Per key (category, severity, or both): alerts of each side, gained and lost."""
    rows: dict[str, dict] = defaultdict(
        lambda: {"champion": 0, "challenger": 0, "gained": 0, "lost": 0, "_a": [], "_b": []}
    )
    for side, mine, other, moved in (("champion", a, b, "lost"), ("challenger", b, a, "gained")):
        for aid, alert in mine.items():
            r = rows[key(alert)]
            r[side] += 1
            r["_a" if side == "champion" else "_b"].append(alert)
            if aid not in other:
                r[moved] += 1
    out = []
    for k in sorted(rows, key=order):
        r = rows[k]
        pa = _precision(r.pop("_a"), verdicts)
        pb = _precision(r.pop("_b"), verdicts)
        out.append({"key": k, **r, "champion_precision": pa, "challenger_precision": pb})
    return out


def _precision(alerts: list[dict], verdicts: Verdicts | None) -> float | None:
    if verdicts is None:
        return None
    v = Counter(verdicts.judge(a) for a in alerts)
    known = v["misuse"] + v["false_positive"]
    return round(v["misuse"] / known, 4) if known else None


def _account_view(alerts: Iterable[dict]) -> dict:
    alerts = list(alerts)
    return {
        "alerts": len(alerts),
        "categories": sorted({a["category"] for a in alerts}),
        "max_severity": max((a["severity"] for a in alerts), key=SEV_ORDER.get, default=None),
    }


def diff(run: Run, verdicts: Verdicts | None, labels: dict[str, str]) -> dict:
    """The backtest as one JSON-able dict: what `--json` writes and the console shows.
    `labels`: what each side is called on the command line."""
    a = {x.alert_id: x.to_dict() for x in run.champion}
    b = {x.alert_id: x.to_dict() for x in run.challenger}
    sev_changed = sum(1 for k in a.keys() & b.keys() if a[k]["severity"] != b[k]["severity"])
    per_acct_a: dict[str, list[dict]] = defaultdict(list)
    per_acct_b: dict[str, list[dict]] = defaultdict(list)
    for x in a.values():
        per_acct_a[x["account_id"]].append(x)
    for x in b.values():
        per_acct_b[x["account_id"]].append(x)
    changed = []
    for acct in sorted(per_acct_a.keys() | per_acct_b.keys()):
        ids_a = {x["alert_id"] for x in per_acct_a.get(acct, [])}
        ids_b = {x["alert_id"] for x in per_acct_b.get(acct, [])}
        if ids_a == ids_b:
            continue
        kind = "gained" if not ids_a else "lost" if not ids_b else "changed"
        changed.append(
            {
                "account_id": acct,
                "change": kind,
                "verdict": verdicts.by_account.get(acct) if verdicts else None,
                "champion": _account_view(per_acct_a.get(acct, [])),
                "challenger": _account_view(per_acct_b.get(acct, [])),
            }
        )
    # Accounts a verdict speaks for first, then the ones with the most alerts moved.
    changed.sort(
        key=lambda c: (
            c["verdict"] is None,
            -abs(c["challenger"]["alerts"] - c["champion"]["alerts"]),
        )
    )
    t = run.traffic
    return {
        "champion": {"label": labels["champion"], "model_version": run.champion_version}
        | _side(list(a.values()), verdicts, t),
        "challenger": {"label": labels["challenger"], "model_version": run.challenger_version}
        | _side(list(b.values()), verdicts, t),
        "traffic": {
            "events": labels["events"],
            "accounts": len(t.accounts),
            "days": round(t.days, 4),
        },
        "verdicts": {"file": labels.get("verdicts"), "count": verdicts.count if verdicts else 0},
        "gained": len(b.keys() - a.keys()),
        "lost": len(a.keys() - b.keys()),
        "severity_changed": sev_changed,
        "by_category": _table(a, b, lambda x: x["category"], verdicts),
        "by_severity": _table(a, b, lambda x: x["severity"], verdicts, lambda s: -SEV_ORDER[s]),
        "by_category_severity": _table(
            a, b, lambda x: f"{x['category']}/{x['severity']}", verdicts
        ),
        "agreement": run.agreement.rows(),
        "changed_accounts": changed,
    }
