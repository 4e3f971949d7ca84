"""A challenger classifier beside the champion, on the same windows, alerting elsewhere.

The engine computes each window's features and the other detectors' scores once; the
shadow replaces only the classifier's score with its own model's and fuses again with a
cooldown state of its own. No other detector reads the classifier or the alerts (the
campaign signals count misbehaviour from features), so the shadow's alerts are exactly
those a separate engine with the challenger as its model would raise, for one extra
classifier call and one fusion per window instead of a second engine.

Its alerts go to `Output.shadow_alerts`, which the store, topic and webhook sinks never
read: only a shadow alert file does. A shadow that fails is logged and counted, and the
champion's window goes on as if there were none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from detectors.base import Detector
from streams.core.alerts import Alert
from streams.core.batch import FeatureBatch, fill_nan
from streams.core.config import FusionConfig, VigilConfig
from streams.fusion.cooldowns import Cooldowns
from streams.fusion.fuse import fuse

log = logging.getLogger("vigil.shadow")
SLOT = "classifier"  # the detector a shadow stands in for


@dataclass
class Agreement:
    """Accounts alerted by the champion, the shadow, or both, per category."""

    champion: dict[str, set[str]] = field(default_factory=dict)
    shadow: dict[str, set[str]] = field(default_factory=dict)

    def add(self, champion: list[Alert], shadow: list[Alert]) -> None:
        for side, alerts in ((self.champion, champion), (self.shadow, shadow)):
            for a in alerts:
                side.setdefault(a.category, set()).add(a.account_id)

    def rows(self) -> list[dict]:
        """Per category (and "all"): accounts alerted by both, by either, by one side only."""
        cats = sorted(set(self.champion) | set(self.shadow))
        out = []
        every_c: set[str] = set()
        every_s: set[str] = set()
        for c in cats:
            a, b = self.champion.get(c, set()), self.shadow.get(c, set())
            every_c |= a
            every_s |= b
            out.append(_row(c, a, b))
        out.append(_row("all", every_c, every_s))
        return out


def _row(category: str, a: set[str], b: set[str]) -> dict:
    either = len(a | b)
    return {
        "category": category,
        "both": len(a & b),
        "either": either,
        "champion_only": len(a - b),
        "shadow_only": len(b - a),
        "agreement": round(len(a & b) / either, 4) if either else None,
    }


@dataclass
class Shadow:
    detector: Detector  # the challenger's classifier
    fusion: FusionConfig
    version: str  # the challenger's model version, carried by its alerts
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    agreement: Agreement = field(default_factory=Agreement)
    alerts: Counter = field(default_factory=Counter)  # by category
    errors: int = 0

    def window(
        self,
        batch: FeatureBatch,
        scores: dict[str, np.ndarray],
        detectors: dict[str, Detector],
        snoozed: dict | None,
        champion: list[Alert],
    ) -> list[Alert]:
        """The challenger's alerts for a window the champion has just fused. It runs after
        the champion's fusion, since the classifier leaves its probabilities in the batch's
        context for explaining."""
        try:
            mine = np.clip(fill_nan(self.detector.score(batch)), 0.0, 1.0)
            # Same order as the engine's dict, so ties in fusion break the same way.
            sc = {**scores, SLOT: mine}
            dets = {**detectors, SLOT: self.detector}
            result = fuse(batch, sc, dets, self.cooldowns, self.fusion, self.version, snoozed)
        except Exception:  # the champion must not pay for a broken challenger
            self.errors += 1
            log.exception("shadow model %s failed on a window", self.version)
            return []
        self.agreement.add(champion, result.alerts)
        self.alerts.update(a.category for a in result.alerts)
        return result.alerts


def build_shadow(cfg: VigilConfig, model_file: str) -> Shadow:
    """A shadow for the challenger at `model_file` (its .onnx), built the way the engine
    builds its own classifier; ModelError if it cannot be loaded."""
    from streams.engine.engine import ModelError, build_detectors

    on = dataclasses.replace(
        cfg,
        model_path=model_file,
        detectors=dataclasses.replace(
            cfg.detectors,
            classifier=dataclasses.replace(cfg.detectors.classifier, enabled=True),
        ),
    )
    det = build_detectors(on)[SLOT]
    version = getattr(det, "version", None)
    if not version:
        raise ModelError(f"shadow model {model_file} has no version in its card")
    return Shadow(det, cfg.fusion, str(version))
