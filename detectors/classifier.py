"""The ONNX classifier over the account feature vector.

A scikit-learn model trained on labelled account-windows, exported with skl2onnx and run
with onnxruntime: one session per process, one call per closed window. Its model card
carries the class names, the feature order and benign reference values that turn the
model's inputs into reasons a person can read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import Explanation, NoAccountState, ScoreThenLearn
from detectors.gate import SCORED, VerdictGate
from detectors.model_checks import (
    ModelRefused,
    check_parity,
    check_width,
    read_card,
    require_files,
    sample,
)
from streams.core.alerts import Reason
from streams.core.batch import FeatureBatch

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "artifacts" / "classifier.onnx"

TEXT = {
    "content_filter_rate": "{v:.0%} of requests content-filtered vs {b:.1%} usual",
    "auth_fail_rate": "{v:.0%} of requests failed auth (401) vs {b:.1%} usual",
    "flagged_rate": "{v:.0%} of requests flagged by moderation vs {b:.1%} usual",
    "moderation_mean": "mean moderation score {v:.2f} vs {b:.2f} usual",
    "distinct_countries": "requests from {v:.0f} countries in 5 min vs {b:.0f} usual",
    "new_ips": "{v:.0f} new IPs in 5 min vs {b:.0f} usual",
    "distinct_ips": "{v:.0f} distinct IPs in 5 min vs {b:.0f} usual",
    "requests": "{v:,.0f} requests in 5 min vs {b:,.0f} usual",
    "tokens": "{v:,.0f} tokens in 5 min vs {b:,.0f} usual",
    "tokens_per_request": "{v:,.0f} tokens per request vs {b:,.0f} usual",
    "completion_ratio": "completion/prompt ratio {v:.1f} vs {b:.1f} usual",
    "length_rate": "{v:.0%} of completions cut at max length vs {b:.0%} usual",
    "interarrival_cv": "machine-regular timing (inter-arrival CV {v:.2f} vs {b:.2f} usual)",
    "prompt_repeat_rate": "{v:.0%} of prompts repeated vs {b:.0%} usual",
    "new_user_agents": "{v:.0f} new user agents in 5 min",
}
LOW_IS_ODD = {"interarrival_cv"}
TEXT["prompt_shared_accounts"] = "{v:.0f} accounts send the same prompts vs {b:.0f} usual"
TEXT["day_tokens"] = "~{v:,.0f} tokens in about a day vs {b:,.0f} usual"

# The features that can back each category, with the value above which they count as
# evidence. Fixed levels, not percentiles of the training data: benign rates reach 100%
# in windows of one or two requests, so their percentiles say nothing. A model that says "spam" for a row
# whose only oddity is its request volume has learned a shortcut, not spam; such rows
# get no classifier score at all.
EVIDENCE: dict[str, dict[str, float]] = {
    # Three countries in five minutes is a company with offices; a leak is more.
    "key_leak": {"distinct_countries": 3, "new_countries": 1, "new_ips": 3, "new_user_agents": 1},
    "distillation": {"length_rate": 0.3, "completion_ratio": 3.0},
    # A shared prompt only relates accounts (templated apps share them too): spam needs
    # content that moderation objects to; repeated shared content is the campaign
    # detector's evidence.
    "spam_campaign": {"moderation_mean": 0.15, "flagged_rate": 0.1},
    "jailbreak_probing": {"content_filter_rate": 0.1, "flagged_rate": 0.1, "moderation_mean": 0.15},
    # One account failing auth is a stale key; stuffing fails across accounts from an IP.
    "credential_stuffing": {"ip_auth_fail_accounts": 2},
    "free_tier_farming": {"tokens": 50_000},
}
# Features that grow with how long Vigil has watched, not with behaviour; the
# out-of-distribution guard ignores them.
OOD_EXEMPT = {"account_age_days", "history_windows", "day_tokens", "novelty"}
# Categories whose evidence is harmful content: it must be new for the account, since a
# trust-and-safety vendor or a red team sends such content every day.
CONTENT = ("jailbreak_probing", "spam_campaign")


PROBABILITIES = "classifier.probabilities"


class ClassifierDetector(NoAccountState, ScoreThenLearn):
    name = "classifier"

    def __init__(
        self, model_path: str = "", intra_op_threads: int = 1, calibrated: bool = False
    ) -> None:
        self.model_path = model_path
        self.intra_op_threads = intra_op_threads
        self.calibrated = calibrated
        self._load()

    # An onnxruntime session cannot be pickled; a pickled classifier is its parameters,
    # and the session is opened again from the model file.
    def __getstate__(self) -> dict[str, Any]:
        return self.params()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _load(self) -> None:
        import onnxruntime as ort

        path = Path(self.model_path) if self.model_path else DEFAULT_MODEL
        if path.is_dir():  # a model directory (`vigil train --out DIR`)
            path = path / "classifier.onnx"
        card_path = path.with_suffix(".card.json")
        require_files(path, card_path)
        self.card: dict[str, Any] = read_card(card_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's messages run over many lines
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelRefused(f"model {path} is not a readable ONNX model: {first}") from None
        try:
            self._read_card_fields()
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise ModelRefused(
                f"model card {card_path} is not one `vigil train` writes ({what})"
            ) from None
        self._input = self.session.get_inputs()[0].name
        self._prob_out = [o.name for o in self.session.get_outputs() if "prob" in o.name][0]
        check_width(path, self.session, self.features)
        lo = np.where(np.isfinite(self._lo), self._lo, 0.0)
        hi = np.maximum(np.where(np.isfinite(self._hi), self._hi, self._p99 * 2), self._p99 * 2)
        check_parity(path, self.probabilities, sample(lo, hi))
        self._guarded = np.array([f not in OOD_EXEMPT for f in self.features])
        self._evidence = self._evidence_table()
        cal = self.card.get("calibration")
        self._cal = (np.array(cal["x"]), np.array(cal["y"])) if cal else None
        # A verdict gate trained beside this classifier (`vigil train --verdicts`).
        gate_path = path.parent / "gate.onnx"
        self.gate: VerdictGate | None = load_gate(gate_path) if gate_path.exists() else None
        if self.gate is not None:
            self.version += "+" + self.gate.version

    def _read_card_fields(self) -> None:
        self.features: list[str] = list(self.card["features"])
        self.classes: list[str] = list(self.card["classes"])
        self._benign = self.classes.index("benign")
        self.version: str = str(self.card["version"])
        ref = self.card["reference"]
        self._median = np.array([ref[f]["median"] for f in self.features], dtype=float)
        self._p99 = np.array([ref[f]["p99"] for f in self.features], dtype=float)
        rng = self.card.get("range")
        # Models trained before the guard existed carry no ranges: then every row passes.
        self._lo = np.array([rng[f][0] if rng else -np.inf for f in self.features], dtype=float)
        self._hi = np.array([rng[f][1] if rng else np.inf for f in self.features], dtype=float)

    def params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "intra_op_threads": self.intra_op_threads,
            "calibrated": self.calibrated,
        }

    def matrix(self, batch: FeatureBatch) -> np.ndarray:
        return np.nan_to_num(
            np.stack([batch.col(f) for f in self.features], axis=1).astype(np.float32), nan=0.0
        )

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        (p,) = self.session.run([self._prob_out], {self._input: X})
        return p

    def _evidence_table(self) -> np.ndarray:
        """(classes, features) thresholds: a value above one backs that class; inf: never."""
        table = np.full((len(self.classes), len(self.features)), np.inf)
        for c, feats in EVIDENCE.items():
            if c not in self.classes:
                continue
            for f, floor in feats.items():
                if f in self.features:
                    j = self.features.index(f)
                    table[self.classes.index(c), j] = floor
        return table

    def in_distribution(self, X: np.ndarray) -> np.ndarray:
        """1 for rows inside the training data's range, falling towards 0 with how far
        (in log units, summed over features) a row lies outside it."""
        lx = np.log1p(np.maximum(X, 0.0))
        above = np.maximum(lx - np.log1p(np.maximum(self._hi, 0.0)), 0.0)
        below = np.maximum(np.log1p(np.maximum(self._lo, 0.0)) - lx, 0.0)
        dist = np.where(self._guarded, np.nan_to_num(above + below), 0.0).sum(axis=1)
        return np.exp(-dist)

    def categories(self, p: np.ndarray) -> np.ndarray:
        q = p.copy()
        q[:, self._benign] = -1
        return np.argmax(q, axis=1)

    def supported(
        self, X: np.ndarray, cat: np.ndarray, usual: np.ndarray | None = None
    ) -> np.ndarray:
        """Whether some feature that can back the row's category is beyond its threshold;
        for harmful content, also well above the account's own usual flagged share."""
        ok = (self._evidence[cat] < X).any(axis=1)
        if usual is None or not len(X):
            return ok
        rate = np.zeros(len(X))
        for f in ("flagged_rate", "content_filter_rate"):
            if f in self.features:
                rate = np.maximum(rate, X[:, self.features.index(f)])
        content = np.isin(cat, [self.classes.index(c) for c in CONTENT if c in self.classes])
        return ok & (~content | (rate > 2 * usual + 0.05))

    def score(self, batch: FeatureBatch) -> np.ndarray:
        X = self.matrix(batch)
        p = self.probabilities(X)
        batch.context[PROBABILITIES] = p  # what explain() reads back for the rows that alert
        raw = np.clip(1.0 - p[:, self._benign], 0.0, 1.0).astype(np.float64)
        if self.calibrated and self._cal is not None:  # the observed misuse share
            raw = np.interp(raw, *self._cal)
        usual = np.nan_to_num(batch.col("usual_flag_rate"))
        backed = self.supported(X, self.categories(p), usual) if len(X) else np.zeros(0, bool)
        return raw * backed * self.in_distribution(X)

    def learn(self, batch: FeatureBatch) -> None:
        return None  # trained offline by `vigil train`

    def explain(self, batch: FeatureBatch, i: int) -> Explanation:
        if PROBABILITIES in batch.context:
            p = batch.context[PROBABILITIES][i]
        else:
            p = self.probabilities(self.matrix(batch.take(np.array([i]))))[0]
        c = int(self.categories(p[None, :])[0])
        category = self.classes[c]
        x = self.matrix(batch.take(np.array([i])))[0]
        spread = np.maximum(self._p99 - self._median, 1e-6)
        # The category's own evidence first, then whatever else is unusual.
        dev = (x - self._median) / spread + np.where(x > self._evidence[c], 1e9, 0.0)
        reasons = []
        for j in np.argsort(-np.abs(dev), kind="stable"):
            f = self.features[j]
            odd = x[j] < self._median[j] * 0.3 if f in LOW_IS_ODD else x[j] > self._p99[j]
            odd = odd or bool(x[j] > self._evidence[c, j])
            if f not in TEXT or not odd:
                continue
            text = TEXT[f].format(v=float(x[j]), b=float(self._median[j]))
            reasons.append(Reason(f, float(x[j]), float(self._median[j]), text))
            if len(reasons) == 3:
                break
        if not reasons:  # nothing past its 99th percentile: name the furthest feature
            j = next((j for j in np.argsort(-np.abs(dev)) if self.features[j] in TEXT), None)
            if j is not None:
                f = self.features[j]
                text = TEXT[f].format(v=float(x[j]), b=float(self._median[j]))
                reasons.append(Reason(f, float(x[j]), float(self._median[j]), text))
        return Explanation(category, reasons)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def load_gate(path: Path) -> VerdictGate:
    """A verdict gate, checked like the classifier: both files, its input width, and ONNX
    against its scikit-learn original on a sample of its own inputs."""
    require_files(path, path.with_suffix(".card.json"))
    gate = VerdictGate(path)
    check_width(path, gate.session, gate.features, extra=len(gate.scored))
    unknown = [d for d in gate.scored if d not in SCORED]
    if unknown:
        raise ModelRefused(f"gate {path} reads the score of an unknown detector {unknown[0]!r}")
    rng = gate.card.get("range", {})
    names = [*gate.features, *gate.scored]
    lo = np.array([rng.get(n, [0.0, 1.0])[0] for n in names], dtype=float)
    hi = np.array([rng.get(n, [0.0, 1.0])[1] for n in names], dtype=float)

    def run(X: np.ndarray) -> np.ndarray:
        (p,) = gate.session.run([gate._prob], {gate._input: X})
        return p

    check_parity(path, run, sample(lo, hi))
    return gate
