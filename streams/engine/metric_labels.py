"""Known label values, exported at 0 from start-up.

A labelled counter only gets a series on its first increment, so without this a panel
shows "no data" where it should show 0, and a `rate()` rule cannot tell "none happened"
from "not exported". Every label value here comes from a closed set in the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.contract.reference import REJECT_REASONS
from streams.core.alerts import CATEGORIES, SEVERITIES

SUPPRESSION_CAUSES = ("cooldown", "snooze")  # streams/fusion/fuse.py's `suppressed` keys
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
    for severity in SEVERITIES:
        for category in CATEGORIES:
            for detector in (*DETECTORS, NO_DETECTOR):
                metrics.alerts.labels(severity, category, detector)
    zero_init_scores(metrics, DETECTORS)


def zero_init_scores(metrics: Any, detectors: Iterable[str]) -> None:
    """A score histogram at 0 for each detector the engine actually runs."""
    for detector in detectors:
        metrics.detector_score.ensure(detector)
