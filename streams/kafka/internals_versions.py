"""The Kafka library versions that streams/kafka/internals.py was tested with.

Kept apart from internals.py and importing none of those libraries, so that a version whose
private names moved is reported as such, not as an ImportError from the adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

# The versions pinned in constraints.txt, the only ones the adapters in internals.py are tested with
# (a unit test keeps the two lists equal). kafka-python is used through public API only.
SUPPORTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
ALLOW_ENV = "VIGIL_ALLOW_UNTESTED_KAFKA_LIBS"


class UnsupportedVersions(RuntimeError):
    """The installed Kafka libraries are not the ones the adapters were tested with."""


def installed_versions(version: Callable[[str], str] = metadata.version) -> dict[str, str]:
    out = {}
    for dist in SUPPORTED:
        try:
            out[dist] = version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "none"
    return out


def check_versions(version: Callable[[str], str] = metadata.version) -> None:
    """Raises UnsupportedVersions, with one line naming installed and supported versions."""
    found = installed_versions(version)
    wrong = {d: v for d, v in found.items() if v != SUPPORTED[d]}
    if wrong:
        have = ", ".join(f"{d} {v}" for d, v in wrong.items())
        want = ", ".join(f"{d} {v}" for d, v in SUPPORTED.items())
        raise UnsupportedVersions(
            f"installed {have}; the worker supports {want} (pinned in constraints.txt; "
            f"set {ALLOW_ENV}=1 to run anyway)"
        )
