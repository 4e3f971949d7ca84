"""The public alert contract: one JSON object per alert."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
CATEGORIES: tuple[str, ...] = (
    "key_leak",
    "distillation",
    "spam_campaign",
    "jailbreak_probing",
    "credential_stuffing",
    "free_tier_farming",
    "anomaly",
)
# What a labelled incident can be: every category but the unsupervised "anomaly".
MISUSE_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c != "anomaly")


@dataclass(frozen=True, slots=True)
class DetectorScore:
    name: str
    score: float


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: float
    baseline: float | None
    text: str


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    account_id: str
    ts: str
    severity: Severity
    score: float
    category: str
    detectors: list[DetectorScore]
    reasons: list[Reason]
    window: dict[str, str]
    model_version: str
    # Accounts that share the campaign evidence; lets the console draw the campaign.
    related_accounts: list[str] = field(default_factory=list)
    # The effective detection config (streams/core/config_version.py) that scored it; ""
    # in alerts written before hot reload existed.
    config_version: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @staticmethod
    def from_dict(d: dict) -> Alert:
        return Alert(
            alert_id=d["alert_id"],
            account_id=d["account_id"],
            ts=d["ts"],
            severity=d["severity"],
            score=float(d["score"]),
            category=d["category"],
            detectors=[DetectorScore(**x) for x in d["detectors"]],
            reasons=[Reason(**x) for x in d["reasons"]],
            window=dict(d["window"]),
            model_version=d["model_version"],
            related_accounts=list(d.get("related_accounts", [])),
            config_version=str(d.get("config_version", "")),
        )


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")
