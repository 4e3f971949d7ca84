"""`vigil train --events ... --verdicts ... --out DIR`: a model directory from analysts' verdicts.

The directory holds the parent classifier (copied unchanged, so `--model DIR` scores
exactly as the parent did) and the verdict gate trained here (`gate.onnx`, its
scikit-learn original and `gate.card.json`), with MODEL_CARD.md recording the lineage:
event files and their sha256, verdict counts per category, held-out figures, the parent
model and the settings.

Unlabelled windows are not used as negatives. The gate only ever judges windows that
cross the alert threshold; a window below it teaches nothing about those, and an
unjudged window above it is unknown, not benign (an analyst may simply not have reached
it). `weak_negatives` turns the second kind into false positives for an experiment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import orjson

from detectors.classifier import DEFAULT_MODEL
from detectors.gate import SCORED, account_key
from models.gate_fit import GateSettings, export, fit_gate
from models.verdict_rows import GATE_FEATURES, label_rows, record
from models.verdicts import counts, read_verdicts, sha256
from streams.core.config import VigilConfig


def parent_model(base: Path | None) -> Path:
    if base is None:
        return DEFAULT_MODEL
    return base / "classifier.onnx" if base.is_dir() else base


def train_from_verdicts(
    events: list[Path],
    verdict_files: list[Path],
    out: Path,
    cfg: VigilConfig,
    base: Path | None = None,
    settings: GateSettings = GateSettings(),
    weak_negatives: bool = False,
    log=print,
) -> dict:
    from detectors.classifier import ClassifierDetector

    verdicts = read_verdicts(verdict_files)
    parent = parent_model(base)
    parent_version = ClassifierDetector(str(parent)).version  # checked like any model
    cfg = dataclasses.replace(cfg, model_path=str(parent))
    log(f"replaying {len(events)} event file(s) with parent model {parent_version}")
    rows = label_rows(record(events, cfg), verdicts, cfg.fusion.cooldown_s)
    if weak_negatives:
        judged = set(rows.account_ids[rows.label >= 0].tolist())
        weak = (rows.label < 0) & ~np.isin(rows.account_ids, list(judged))
        rows.label[weak] = 0
    use = rows.label >= 0
    X, y, g, c = rows.X[use], rows.label[use], rows.account_ids[use], rows.category[use]
    log(
        f"{rows.matched}/{len(verdicts)} verdicts found on a window; {len(y)} windows judged "
        f"({int((y == 1).sum())} misuse, {int((y == 0).sum())} false positive) "
        f"of {len(rows.X)} that crossed the alert threshold"
    )
    lineage = {
        "events": [{"path": str(p), "sha256": sha256(p)} for p in events],
        "verdict_files": [{"path": str(p), "sha256": sha256(p)} for p in verdict_files],
        "verdicts": counts(verdicts),
        "verdicts_on_a_window": rows.matched,
        "verdicts_on_no_window": len(rows.unmatched),
        "windows": {"misuse": int((y == 1).sum()), "false_positive": int((y == 0).sum())},
        "accounts": {
            "misuse": len(np.unique(g[y == 1])),
            "false_positive": len(np.unique(g[y == 0])),
        },
        "weak_negatives": weak_negatives,
    }
    if len(np.unique(y)) < 2:
        # Nothing to tell apart: the directory is the parent model, with the lineage, so
        # the commands that follow (replay --model) still run and score as the parent.
        kind = "misuse" if len(y) and y[0] == 1 else "false positive" if len(y) else "no"
        reason = f"the verdicts cover {kind} windows only: no gate, the parent model as it is"
        card = {"version": "none", "inactive": reason, "parent": {"path": str(parent)}}
        card["parent"]["version"] = parent_version
        card["training_data"] = lineage
        _copy_parent(parent, out)
        for stale in ("gate.onnx", "gate.card.json", "gate.skl.pkl"):
            (out / stale).unlink(missing_ok=True)
        (out / "MODEL_CARD.md").write_text(
            f"# Model card: `{parent_version}` from verdicts, without a gate\n\n{reason}.\n"
            f"Lineage (events, verdict files with sha256, verdict counts): verdicts.card.json.\n"
        )
        (out / "verdicts.card.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
        log(f"wrote {out} ({parent_version}): {reason}")
        return card
    model, threshold, held = fit_gate(X, y, g, c, settings)
    blob, parity = export(model, X)
    original = pickle.dumps(model, protocol=5)
    names = [*list(GATE_FEATURES), *SCORED]
    card = {
        "version": "",  # below: a hash of everything that decides a veto
        "model": "sklearn.ensemble.GradientBoostingClassifier",
        "features": list(GATE_FEATURES),
        "scored": list(SCORED),
        "threshold": threshold,
        "range": {n: [float(X[:, j].min()), float(X[:, j].max())] for j, n in enumerate(names)},
        # A window is vetoed only near the rejected ones (detectors/gate.py, `familiar`).
        "false_positive_box": {
            n: [float(X[y == 0, j].min()), float(X[y == 0, j].max())] for j, n in enumerate(names)
        },
        "familiar_within": settings.familiar_within,
        "cleared_accounts": sorted(
            account_key(a) for a in set(g[y == 0].tolist()) - set(g[y == 1].tolist())
        ),
        "cleared_threshold": settings.cleared_threshold,
        "parent": {"path": str(parent), "version": parent_version},
        "training_data": lineage,
        "heldout": held,
        "onnx_parity_max_abs_diff": parity,
        "settings": dataclasses.asdict(settings),
        "alert_threshold": cfg.fusion.alert_threshold,
        "cooldown_s": cfg.fusion.cooldown_s,
    }
    # The ONNX bytes of one model differ between processes (skl2onnx's naming), so the
    # version hashes the fitted model and every card field a veto depends on.
    decides = {k: card[k] for k in ("features", "scored", "threshold", "false_positive_box")}
    decides |= {k: card[k] for k in ("familiar_within", "cleared_accounts", "cleared_threshold")}
    digest = hashlib.sha256(original + orjson.dumps(decides, option=orjson.OPT_SORT_KEYS))
    card["version"] = version = "gate-" + digest.hexdigest()[:12]
    _copy_parent(parent, out)
    (out / "gate.onnx").write_bytes(blob)
    (out / "gate.skl.pkl").write_bytes(original)
    (out / "gate.card.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
    from models.verdict_card import render

    (out / "MODEL_CARD.md").write_text(render(card))
    log(
        f"wrote {out} ({parent_version}+{version}); veto below {threshold:.3f}, parity {parity:.1e}"
    )
    return card


def _copy_parent(parent: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".card.json", ".skl.pkl"):
        src = parent.with_suffix(suffix)
        dst = out / f"classifier{suffix}"
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
