"""What an engine is built from and gives back: its detectors and its output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from detectors.base import Detector
from detectors.baseline import BaselineDetector
from detectors.campaign import CampaignDetector
from detectors.population import PopulationDetector
from detectors.rules import RulesDetector
from detectors.takeover import TakeoverDetector
from streams.contract.events import DeadLetter
from streams.core.alerts import Alert
from streams.core.config import ConfigError, VigilConfig
from streams.engine.snapshots import WindowSnapshots
from streams.features.campaign_split import Memberships


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: list[WindowSnapshots] = field(default_factory=list)
    # A challenger's alerts (streams/engine/shadow.py): only a shadow alert file reads them.
    shadow_alerts: list[Alert] = field(default_factory=list)
    # Windows held for their campaign figures (streams/engine/exchange.py): (window end,
    # this engine's memberships of it), for the owners of the keys.
    campaign_requests: list[tuple[float, Memberships]] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.alerts += other.alerts
        self.campaign_requests += other.campaign_requests
        self.dead_letters += other.dead_letters
        self.snapshots += other.snapshots
        self.shadow_alerts += other.shadow_alerts


class ModelError(RuntimeError):
    """The classifier's model cannot be loaded; the message names the model and why."""


# Every name `build_detectors` can give a detector: a snooze names one of these.
DETECTOR_NAMES = ("rules", "baseline", "population", "campaign", "takeover", "classifier")


def build_detectors(cfg: VigilConfig, classifier: bool = True) -> dict[str, Detector]:
    """Every detector the config asks for, with its `[detectors.NAME]` parameters. A
    classifier that cannot be loaded raises ModelError: running silently without it would
    hide the failure."""
    d = cfg.detectors
    try:
        dets: dict[str, Detector] = {
            "rules": RulesDetector(cfg.rules),
            "baseline": BaselineDetector(
                series_params=dict(d.baseline.series),
                avg_alpha=d.baseline.avg_alpha,
                noise_floor=d.baseline.noise_floor,
            ),
            "population": PopulationDetector(**dataclasses.asdict(d.population)),
            "campaign": CampaignDetector(
                **dataclasses.asdict(d.campaign),
                free_daily_tokens=cfg.platform.free_daily_tokens,
            ),
            "takeover": TakeoverDetector(**dataclasses.asdict(d.takeover)),
        }
    except (TypeError, ValueError) as exc:  # e.g. a series parameter the detector lacks
        raise ConfigError(f"detectors: {exc}") from None
    if classifier and d.classifier.enabled:
        from detectors.classifier import ClassifierDetector

        try:
            dets["classifier"] = ClassifierDetector(
                cfg.model_path,
                intra_op_threads=d.classifier.intra_op_threads,
                calibrated=cfg.fusion.classifier_calibrated,
            )
        except Exception as exc:
            where = cfg.model_path or "the shipped default"
            raise ModelError(f"classifier model {where} cannot be loaded: {exc}") from None
    return dets
