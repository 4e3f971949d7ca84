"""Figures a test measured (the fault soak's table, parity counts, delays), printed together
in a "figures" section at the end of the run.

A test hands them to the `figures` fixture rather than printing them: under `pytest -n`
what a worker process prints never reaches the terminal, while a report's
`user_properties` travel back to the controller, failed tests' included.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

KEY = "vigil_figures"
_seen: list[tuple[str, str]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    def record(text: str) -> None:
        request.node.user_properties.append((KEY, text.strip("\n")))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _seen.extend((report.nodeid, v) for k, v in report.user_properties if k == KEY)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _seen:
        return
    terminalreporter.section("figures")
    for nodeid, text in _seen:
        terminalreporter.write_line(f"{nodeid}\n{text}\n")
