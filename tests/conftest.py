"""Shared fixtures. Real services (Kafka, PostgreSQL, Prometheus, Chromium) come from the
plugins below; each starts its service on loopback and fails with an install hint when the
tool is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.kafka",
    "tests.plugins.postgres",
    "tests.plugins.browser",
    "tests.plugins.prometheus",
]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small generated corpus with every misuse scenario: (events, labels)."""
    from synth.generate import generate

    out = tmp_path_factory.mktemp("corpus")
    res = generate(out, accounts=300, hours=8, seed=11, bad_rate=0.0)
    return res.events_path, res.labels_path
