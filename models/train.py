"""`vigil train`: the default classifier, reproducible from the project's own generator.

Trains a scikit-learn GradientBoostingClassifier on labelled account-windows, exports it
with skl2onnx, checks that onnxruntime gives the same probabilities, and writes the model
with its card next to it.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from models.dataset import Dataset, features_of
from streams.core.alerts import MISUSE_CATEGORIES
from streams.features.window import FEATURES
from synth.generate import generated

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CLASSES = ("benign", *MISUSE_CATEGORIES)


@dataclass(frozen=True)
class TrainConfig:
    seeds: tuple[int, ...] = (101, 102, 103)
    holdout_seed: int = 104
    accounts: int = 2000
    hours: float = 24.0
    benign_rows: int = 40_000
    n_estimators: int = 60
    max_depth: int = 3
    learning_rate: float = 0.1
    random_state: int = 0
    cache: Path = field(default_factory=lambda: Path("data/train"))


HARD_NEGATIVE = (
    "content_filtered",
    "flagged_requests",
    "auth_failures",
    "new_ips",
    "new_countries",
)


def _sample(
    ds: Dataset, benign_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Every misuse row; every benign row with any risk signal; a random sample of the rest.

    Benign windows with a stray content-filter hit, a failed login or a new IP are rare
    and are exactly where false alarms come from, so none of them is left out.
    """
    benign = ds.y == "benign"
    cols = [FEATURES.index(f) for f in HARD_NEGATIVE]
    hard = benign & (ds.X[:, cols] > 0).any(axis=1)
    plain = np.flatnonzero(benign & ~hard)
    pick = rng.choice(plain, size=min(benign_rows, len(plain)), replace=False)
    idx = np.sort(np.concatenate([pick, np.flatnonzero(hard), np.flatnonzero(~benign)]))
    return ds.X[idx], ds.y[idx]


def _weights(y: np.ndarray) -> np.ndarray:
    # Square-root balancing: rare scenarios count more, but not so much that the model
    # trades many false alarms for one more caught window.
    classes, counts = np.unique(y, return_counts=True)
    per = dict(zip(classes.tolist(), np.sqrt(counts.max() / counts).tolist(), strict=True))
    return np.array([per[c] for c in y.tolist()])


def reference(X: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    benign = X[y == "benign"]
    return {
        f: {
            "median": float(np.median(benign[:, j])),
            "p99": float(np.quantile(benign[:, j], 0.99)),
        }
        for j, f in enumerate(FEATURES)
    }


def ranges(X: np.ndarray) -> dict[str, list[float]]:
    """Per feature, the 0.1% and 99.9% quantiles of every training row: the classifier's
    out-of-distribution guard damps rows outside them."""
    lo, hi = np.quantile(X, [0.001, 0.999], axis=0)
    return {f: [float(lo[j]), float(hi[j])] for j, f in enumerate(FEATURES)}


def reliability(p_misuse: np.ndarray, is_misuse: np.ndarray, bins: int = 10) -> list[dict]:
    """Predicted misuse probability against the observed misuse share, per decile bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p_misuse, edges) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "rows": int(m.sum()),
                    "mean_predicted": round(float(p_misuse[m].mean()), 4),
                    "observed": round(float(is_misuse[m].mean()), 4),
                }
            )
    return out


def backed(X: np.ndarray, p: np.ndarray, classes: list[str]) -> np.ndarray:
    """Rows the engine would score at all: those the classifier's evidence gate lets
    through (`detectors.classifier.EVIDENCE`), with the same floors."""
    from detectors.classifier import CONTENT, EVIDENCE

    q = p.copy()
    q[:, classes.index("benign")] = -1
    cat = np.array(classes)[np.argmax(q, axis=1)]
    ok = np.zeros(len(X), dtype=bool)
    col = {f: j for j, f in enumerate(FEATURES)}
    for c, feats in EVIDENCE.items():
        rows = cat == c
        for f, floor in feats.items():
            ok |= rows & (X[:, col[f]] > floor)
    rate = np.maximum(X[:, col["flagged_rate"]], X[:, col["content_filter_rate"]])
    content = np.isin(cat, CONTENT)
    return ok & (~content | (rate > 2 * X[:, col["usual_flag_rate"]] + 0.05))


def calibration(
    p_misuse: np.ndarray, is_misuse: np.ndarray, groups: np.ndarray, scored: np.ndarray
) -> dict:
    """An isotonic map from the model's misuse probability to the observed misuse share,
    among the rows the engine scores (the evidence gate passed; the others score 0).

    Fitted on half of the held-out accounts and checked on the other half (split by
    account, so no account is on both sides); the engine applies it to the score.
    """
    from sklearn.isotonic import IsotonicRegression

    half = np.array([hash_half(a) for a in groups.tolist()])
    fit, check = half & scored, ~half & scored
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(p_misuse[fit], is_misuse[fit].astype(float))
    x = np.linspace(0.0, 1.0, 101)
    y = iso.predict(x)
    return {
        "x": [round(float(v), 4) for v in x],
        "y": [round(float(v), 4) for v in y],
        "fitted_rows": int(fit.sum()),
        "check": reliability(np.interp(p_misuse[check], x, y), is_misuse[check]),
    }


def hash_half(account_id: str) -> bool:
    """A fixed split of accounts in two halves (not Python's salted hash)."""
    return int(hashlib.sha256(account_id.encode()).hexdigest()[:8], 16) % 2 == 0


def per_class(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for c in CLASSES:
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        out[c] = {
            "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4),
            "support": int(np.sum(y_true == c)),
        }
    return out


def train(cfg: TrainConfig, out_dir: Path = ARTIFACTS, log=print) -> dict:
    parts = []
    for seed in cfg.seeds:
        log(f"generating and featurising seed {seed} ({cfg.accounts} accounts, {cfg.hours:g} h)")
        parts.append(features_of(*generated(cfg.cache, cfg.accounts, cfg.hours, seed)))
    log(f"featurising held-out seed {cfg.holdout_seed}")
    hold = features_of(*generated(cfg.cache, cfg.accounts, cfg.hours, cfg.holdout_seed))
    sources = {
        "generator_seeds": list(cfg.seeds),
        "accounts_per_seed": cfg.accounts,
        "hours": cfg.hours,
        "sources": [f"vigil generate seed {s}" for s in cfg.seeds],
    }
    return fit_export(parts, hold, f"seed {cfg.holdout_seed}", sources, cfg, out_dir, log)


def fit_export(
    parts: list[Dataset],
    hold: Dataset,
    hold_name: str,
    sources: dict,
    cfg: TrainConfig,
    out_dir: Path,
    log=print,
    strict: bool = True,
) -> dict:
    """Fit on `parts`, export to ONNX, check parity and reliability on `hold`, write the
    model and its card to `out_dir`. `strict`: every class must be in the training data."""
    import onnx
    import onnxruntime as ort
    import skl2onnx
    import sklearn
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(cfg.random_state)
    sampled = [_sample(p, cfg.benign_rows // len(parts), rng) for p in parts]
    X = np.vstack([x for x, _ in sampled])
    y = np.concatenate([lab for _, lab in sampled])
    log(
        f"training on {len(y):,} account-windows: "
        + ", ".join(f"{c} {int(np.sum(y == c))}" for c in CLASSES)
    )
    model = GradientBoostingClassifier(
        n_estimators=cfg.n_estimators,
        max_depth=cfg.max_depth,
        learning_rate=cfg.learning_rate,
        subsample=0.8,
        random_state=cfg.random_state,
    )
    t = time.perf_counter()
    model.fit(X.astype(np.float32), y, sample_weight=_weights(y))
    fit_s = time.perf_counter() - t
    missing = sorted(set(CLASSES) - set(model.classes_))
    if missing and (strict or "benign" in missing):
        raise RuntimeError(f"training data lacks classes: {missing}")

    onx = to_onnx(
        model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17
    )
    blob = onx.SerializeToString()
    log(f"checking ONNX parity on held-out {hold_name}")
    Xh = hold.X.astype(np.float32)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    prob_out = [o.name for o in sess.get_outputs() if "prob" in o.name][0]
    p_onnx = sess.run([prob_out], {sess.get_inputs()[0].name: Xh})[0]
    p_skl = model.predict_proba(Xh)
    parity = float(np.max(np.abs(p_onnx - p_skl)))
    y_pred = model.classes_[np.argmax(p_skl, axis=1)]
    benign_col = list(model.classes_).index("benign")
    table = reliability(1.0 - p_skl[:, benign_col], hold.y != "benign")
    scored = backed(hold.X, p_skl, [str(c) for c in model.classes_])
    calib = calibration(1.0 - p_skl[:, benign_col], hold.y != "benign", hold.account_ids, scored)

    version = "clf-" + hashlib.sha256(blob).hexdigest()[:12]
    card = {
        "version": version,
        "model": "sklearn.ensemble.GradientBoostingClassifier",
        "params": {
            k: getattr(model, k)
            for k in ("n_estimators", "max_depth", "learning_rate", "subsample")
        },
        "classes": [str(c) for c in model.classes_],
        "features": list(FEATURES),
        "reference": reference(X, y),
        "range": ranges(X),
        "calibration": calib,
        "training_data": {
            **sources,
            "rows": {c: int(np.sum(y == c)) for c in CLASSES},
            "benign_rows_sampled": cfg.benign_rows,
        },
        "holdout": {
            "seed": hold_name,
            "rows": int(len(hold.y)),
            "per_class": per_class(hold.y, y_pred),
            "reliability": table,
        },
        "onnx_parity_max_abs_diff": parity,
        "fit_seconds": round(fit_s, 1),
        "versions": {
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classifier.onnx").write_bytes(blob)
    # The scikit-learn original, kept for the ONNX-vs-scikit-learn benchmark and parity test.
    (out_dir / "classifier.skl.pkl").write_bytes(pickle.dumps(model, protocol=5))
    (out_dir / "classifier.card.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
    (out_dir / "MODEL_CARD.md").write_text(render_card(card))
    log(
        f"wrote {out_dir}/classifier.onnx ({len(blob) / 1e3:.0f} kB), version {version}, parity {parity:.2e}"
    )
    return card


def render_card(card: dict) -> str:
    rows = "\n".join(
        f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['support']} |"
        for c, m in card["holdout"]["per_class"].items()
    )
    td = card["training_data"]
    rel = "\n".join(
        f"| {r['bin']} | {r['rows']} | {r['mean_predicted']:.3f} | {r['observed']:.3f} |"
        for r in card["holdout"].get("reliability", [])
    )
    cal = "\n".join(
        f"| {r['bin']} | {r['rows']} | {r['mean_predicted']:.3f} | {r['observed']:.3f} |"
        for r in card.get("calibration", {}).get("check", [])
    )
    return f"""# Model card: Vigil default classifier `{card["version"]}`

**Model**: {card["model"]} {card["params"]}, exported with skl2onnx {card["versions"]["skl2onnx"]}
and run with onnxruntime {card["versions"]["onnxruntime"]} (CPU provider, one cached session).

**Task**: classify an account's 5-minute window into `benign` or one misuse scenario
({", ".join(c for c in card["classes"] if c != "benign")}). The engine uses
1 - P(benign) as the classifier's score and the most likely misuse class as the alert category.

**Inputs**: {len(card["features"])} features, in this order: {", ".join(f"`{f}`" for f in card["features"])}.

**Training data**: {", ".join(td.get("sources", []))} ({td.get("accounts_per_seed", "-")}
accounts x {td.get("hours", "-")} h each for generated ones). A window is labelled with the account's scenario when it overlaps
the account's misuse activity, else benign. Every benign window with a risk signal
(a content-filtered, flagged or 401 request, a new IP or country) is kept as a hard
negative; the other benign windows are sampled down to {td["benign_rows_sampled"]:,}.
Classes are weighted by the square root of their rarity. Rows: {td["rows"]}.

**Held-out evaluation** (window level, {card["holdout"]["seed"]}, {card["holdout"]["rows"]:,} windows):

| class | precision | recall | support |
|---|---|---|---|
{rows}

**Reliability** on the held-out data (predicted misuse probability, 1 - P(benign), in
bins, against the share of those windows that really are misuse):

| predicted | windows | mean predicted | observed misuse |
|---|---|---|---|
{rel}

The classes are re-weighted in training, so raw probabilities overstate misuse. The
engine therefore maps them through an isotonic calibration (`calibration` in the card),
fitted on half of the held-out accounts, among the windows the engine scores at all
(those whose predicted category a concrete feature backs; the others score 0). On the
other half of the accounts, same windows, it gives:

| calibrated | windows | mean calibrated | observed misuse |
|---|---|---|---|
{cal}

Beyond calibration, the engine never lets the classifier alone raise an alert above
`medium`, scores only rows whose category is backed by a concrete feature, and damps
rows outside the 0.1%-99.9% range of the training data (`range` in the card).
Splits are grouped: the held-out seed has other accounts and other incidents than the
training seeds. On traffic from another source, see `vigil eval cross-source`.

Account-level quality (what an analyst sees) is measured by `vigil eval scenarios`.

**ONNX parity**: largest absolute difference between scikit-learn `predict_proba` and
onnxruntime on the held-out windows: {card["onnx_parity_max_abs_diff"]:.2e}.

**Limits**: trained only on synthetic traffic from Vigil's generator; on a real platform,
retrain on analyst verdicts (the console's labels export) before trusting its categories.
Reproduce with `vigil train --out models/artifacts` (fit took {card["fit_seconds"]} s here).
"""
