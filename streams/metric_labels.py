"""Known label values, exported at 0 from start-up.

A labelled counter only gets a series on its first increment, so without this a panel
shows "no data" where it should show 0, and a `rate()` rule cannot tell "none happened"
from "not exported". Every label value here comes from a closed set in the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.alerts import CATEGORIES, SEVERITIES
from streams.contract import REJECT_REASONS

SUPPRESSION_CAUSES = ("cooldown", "snooze")  # streams/fusion.py's `suppressed` keys
NO_DETECTOR = "none"  # the `detector` of an alert that names none


def zero_init(metrics: Any, detectors: Iterable[str]) -> None:
    """Create every series of the engine's labelled counters (and score histograms)."""
    for reason in REJECT_REASONS:
        metrics.events_rejected.labels(reason)
    for cause in SUPPRESSION_CAUSES:
        metrics.alerts_suppressed.labels(cause)
    names = list(detectors)
    for severity in SEVERITIES:
        for category in CATEGORIES:
            for detector in [*names, NO_DETECTOR]:
                metrics.alerts.labels(severity, category, detector)
    for detector in names:
        metrics.detector_score.ensure(detector)
