"""`vigil eval verdict-loop`: the operator's loop, measured on a labelled corpus.

1. Replay the corpus with the current model; take its alerts in the first HOURS.
2. Judge them as an analyst with the truth at hand would: `misuse` when the truth labels
   the account at that time (onset <= window end <= end + 2 h), else `false_positive`.
   They are written as the console writes verdicts (verdicts.jsonl).
3. `vigil train --events (the first HOURS) --verdicts verdicts.jsonl --out DIR/model`.
4. Replay the whole corpus with the current model and with DIR/model; score the alerts
   after HOURS only, with the shared scorer's definitions (models/crosssource.py), on the
   labels that can still be detected then (end + 2 h after HOURS).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from models.crosssource import (
    GRACE_S,
    Truth,
    category_of,
    external_truth,
    generator_truth,
    score,
    truth_object,
)
from streams.core.config import VigilConfig


def read_truth(path: Path, events: Path) -> Truth:
    return (
        generator_truth(path) if "accounts" in truth_object(path) else external_truth(path, events)
    )


def replay_alerts(events: Path, cfg: VigilConfig, model: str = "") -> list:
    from streams.engine.engine import Engine
    from streams.replay.reader import open_input, replay

    engine = Engine(dataclasses.replace(cfg, model_path=model) if model else cfg)
    out: list = []
    with open_input(str(events)) as fh:
        replay(engine, fh, sink=lambda o: out.extend(o.alerts))
    return out


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def judge(
    alerts: list, truth: Truth, until: float, reject: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The verdicts an analyst with the truth would give the alerts whose window ended
    by `until`. `reject`: alert categories this platform's analysts call false alarms
    whatever the truth says (a policy, to measure the gate where alerts are rejected)."""
    labels: dict[str, list] = {}
    for lab in truth.labels:
        labels.setdefault(lab.account_id, []).append(lab)
    out = []
    for a in alerts:
        end = _epoch(a.window["end"])
        if end > until:
            continue
        hit = next(
            (x for x in labels.get(a.account_id, []) if x.onset <= end <= x.end + GRACE_S), None
        )
        if a.category in reject:
            hit = None
        category = (category_of(hit.scenario) or a.category) if hit else ""
        out.append(
            {
                "alert_id": a.alert_id,
                "account_id": a.account_id,
                "verdict": "misuse" if hit else "false_positive",
                "category": category,
                "alert_category": a.category,
                "window": a.window,
                "model_version": a.model_version,
            }
        )
    return out


def first_hours(events: Path, until: float, out: Path) -> Path:
    """The events with a time at or before `until` (the verdicts' history)."""
    from streams.replay.reader import open_input, read_batches

    with open_input(str(events)) as fh, out.open("wb") as dst:
        for batch in read_batches(fh):  # a file it cannot read: UnreadableInput
            for line in batch:
                try:
                    ts = orjson.loads(line).get("ts")
                    t = _epoch(ts) if isinstance(ts, str) else float(ts)
                except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
                    continue  # a bad line would be a dead letter; it carries no verdict
                if t <= until:
                    dst.write(line + b"\n")
    return out


def after(alerts: list, since: float) -> list[tuple[str, float]]:
    return [(a.account_id, _epoch(a.ts)) for a in alerts if _epoch(a.ts) >= since]


def late_truth(truth: Truth, since: float) -> Truth:
    """The truth as seen from `since`: labels still detectable then, days counted from it."""
    keep = [x for x in truth.labels if x.end + GRACE_S >= since]
    return dataclasses.replace(truth, start=since, labels=keep)


def run_loop(
    events: Path,
    truth_path: Path,
    hours: float,
    out: Path,
    cfg: VigilConfig,
    echo=print,
    reject: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    from models.verdict_train import train_from_verdicts

    out.mkdir(parents=True, exist_ok=True)
    truth = read_truth(truth_path, events)
    cut = truth.start + hours * 3600
    if cut >= truth.end:  # checked before any replay: nothing would be left to score
        raise ValueError(
            f"--hours {hours:g} reaches the end of the labelled period "
            f"({(truth.end - truth.start) / 3600:g} h): no hours are left to score after it"
        )
    echo(f"replaying {events} with the current model")
    shipped = replay_alerts(events, cfg)
    verdicts = judge(shipped, truth, cut, reject)
    vpath = out / "verdicts.jsonl"
    vpath.write_bytes(b"".join(orjson.dumps(v) + b"\n" for v in verdicts))
    n_fp = sum(v["verdict"] == "false_positive" for v in verdicts)
    echo(f"{len(verdicts)} verdicts on the first {hours:g} h ({n_fp} false positive)")
    history = first_hours(events, cut, out / "events-history.jsonl")
    model_dir = out / "model"
    card = train_from_verdicts([history], [vpath], model_dir, cfg, log=echo)
    echo(f"replaying {events} with {model_dir}")
    trained = replay_alerts(events, cfg, str(model_dir))
    seen = late_truth(truth, cut)
    res: dict[str, Any] = {"events": str(events), "truth": str(truth_path), "hours": hours}
    res["verdicts"] = {"misuse": len(verdicts) - n_fp, "false_positive": n_fp}
    res["gate"] = {"version": card["version"], "threshold": card.get("threshold")}
    for name, alerts in (("current", shipped), ("trained", trained)):
        s = score(after(alerts, cut), seen)
        s_all = score(after(alerts, cut), truth)
        res[name] = {
            "late_labels": {k: s[k] for k in _FIGURES},
            "all_labels": {k: s_all[k] for k in _FIGURES},
            "scenarios": {k: v["recall"] for k, v in s["scenarios"].items()},
        }
        if reject:  # the policy's false alarms after the cut, and recall on the rest
            late = [a for a in alerts if _epoch(a.ts) >= cut]
            kept = [x for x in seen.labels if category_of(x.scenario) not in reject]
            rest = score(after(alerts, cut), dataclasses.replace(seen, labels=kept))
            res[name]["rejected_kind"] = {
                "alerts": sum(a.category in reject for a in late),
                "accounts": len({a.account_id for a in late if a.category in reject}),
                "recall_macro_other_scenarios": rest["recall_macro"],
            }
    a, b = res["current"]["late_labels"], res["trained"]["late_labels"]
    fp_a, fp_b = a["fp_benign_accounts_per_1k_per_day"], b["fp_benign_accounts_per_1k_per_day"]
    res["bar"] = {
        "benign_per_1k_day": [fp_a, fp_b],
        "benign_halved": fp_b <= fp_a / 2,
        "recall_macro": [a["recall_macro"], b["recall_macro"]],
        "recall_within_0.05": (b["recall_macro"] or 0) >= (a["recall_macro"] or 0) - 0.05,
    }
    echo(
        f"after hour {hours:g}: benign accounts alerted per 1,000 per day {fp_a:.3f} -> "
        f"{fp_b:.3f}; macro recall {a['recall_macro']:.3f} -> {b['recall_macro']:.3f}; "
        f"alerts {a['alerts']} -> {b['alerts']}"
    )
    (out / "loop.json").write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    return res


_FIGURES = (
    "precision",
    "recall_macro",
    "benign_alerted",
    "fp_benign_accounts_per_1k_per_day",
    "alerts",
)
