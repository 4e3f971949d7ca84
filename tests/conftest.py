"""Shared fixtures. Real services (Kafka, PostgreSQL, Prometheus, Chromium) come from the
plugins below; each starts its service on loopback and fails with an install hint when the
tool is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.kafka_broker",
    "tests.plugins.kafka",
    "tests.plugins.kafka_cluster",
    "tests.plugins.postgres",
    "tests.plugins.browser",
    "tests.plugins.prometheus",
    "tests.plugins.webhook_receiver",
    "tests.plugins.figures",
]


# Fixtures that start a real service: a test in tests/unit may not ask for any of them.
SERVICE_FIXTURES = {
    "kafka_broker",
    "kafka_bootstrap",
    "kafka_env",
    "restartable_kafka",
    "kafka_cluster3",
    "postgres_server",
    "postgres_url",
    "browser",
    "page",
    "prometheus_binary",
    "prometheus_factory",
    "console_live",
}
TIERS = ("unit", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from its folder; a unit test using a service is an error.

    The three-node cluster's tests (the fault soak, the longest by far) come first: `make
    test` runs the Kafka tier on two processes, a file at a time in this order, so the soak
    starts at once and the other files go to whichever process is free."""
    root = Path(__file__).parent
    for item in items:
        tier = Path(item.path).relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit or tests/integration")
        item.add_marker(getattr(pytest.mark, tier))
        used = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and used:
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(used))}: move it to tests/integration"
            )
    items.sort(key=lambda item: "kafka_cluster3" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small generated corpus with every misuse scenario: (events, labels). Made once per
    run: with `pytest -n`, the workers share it through the run's base folder, under a lock."""
    import fcntl

    from synth.generate import generate

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "small-corpus"
    with open(shared / "small-corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        events, labels = out / "events.jsonl.gz", out / "labels.json"
        if not (events.exists() and labels.exists()):
            res = generate(out, accounts=300, hours=8, seed=11, bad_rate=0.0)
            events, labels = res.events_path, res.labels_path
    return events, labels
