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


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    def record(text: str) -> None:
        request.node.user_properties.append((KEY, text.strip("\n")))

    return record


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    # The terminal reporter keeps every test's reports, by outcome; warnings sit there too.
    found = [
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for key, value in getattr(report, "user_properties", ())
        if key == KEY
    ]
    if not found:
        return
    terminalreporter.section("figures")
    for nodeid, text in found:
        terminalreporter.write_line(f"{nodeid}\n{text}\n")
