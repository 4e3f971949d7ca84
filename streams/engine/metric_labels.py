"""Known label values, exported at 0 from start-up.

A labelled counter only gets a series on its first increment, so without this a panel
shows "no data" where it should show 0, and a `rate()` rule cannot tell "none happened"
from "not exported". Every label value here comes from a closed set in the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from detectors.gate import GATE_NAME
from streams.contract.reference import REJECT_REASONS
from streams.core.alerts import CATEGORIES, SEVERITIES

# streams/fusion/fuse.py's `suppressed` keys
SUPPRESSION_CAUSES = ("cooldown", "snooze", "no_reason", GATE_NAME)
SHADOW_AGREEMENT = ("both", "champion_only", "shadow_only")
# The detectors `streams.engine.build_detectors` builds; an alert names the top one.
DETECTORS = ("rules", "baseline", "population", "campaign", "classifier")
NO_DETECTOR = "none"  # the `detector` of an alert that names none


def zero_init_counters(metrics: Any) -> None:
    """Create every series of the engine's labelled counters and score histograms; called
    as `Metrics` starts, before a worker has any partition (and so any engine)."""
    for reason in REJECT_REASONS:
        metrics.events_rejected.labels(reason)
    for cause in SUPPRESSION_CAUSES:
        metrics.alerts_suppressed.labels(cause)
    for side in SHADOW_AGREEMENT:
        metrics.shadow_accounts.labels(side)
    for severity in SEVERITIES:
        for category in CATEGORIES:
            for detector in (*DETECTORS, NO_DETECTOR):
                metrics.alerts.labels(severity, category, detector)
    zero_init_scores(metrics, DETECTORS)


def zero_init_scores(metrics: Any, detectors: Iterable[str]) -> None:
    """A score histogram at 0 for each detector the engine actually runs."""
    for detector in detectors:
        metrics.detector_score.ensure(detector)


def count_versions(metrics: Any, alerts: Iterable[Any]) -> None:
    """Alert volume per model and config version: a promotion shows as one series giving
    way to the next."""
    for a in alerts:
        metrics.alerts_by_version.labels(a.model_version, a.config_version).inc()


def count_agreement(metrics: Any, champion: Iterable[Any], shadow: Iterable[Any]) -> None:
    """Accounts of one window alerted by the champion, the shadow or both."""
    a = {x.account_id for x in champion}
    b = {x.account_id for x in shadow}
    for side, n in (
        ("both", len(a & b)),
        ("champion_only", len(a - b)),
        ("shadow_only", len(b - a)),
    ):
        if n:
            metrics.shadow_accounts.labels(side).inc(n)
