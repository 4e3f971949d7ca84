"""Regression: figures the Kafka tests printed never reached the terminal once that tier ran
under `pytest -n` (a worker process's prints are not shown)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.kafka import REPO

TESTS = """
def test_passes(figures):
    figures("\\nparity: 47 of 47")

def test_fails(figures):
    figures("soak: lost 3")
    assert False
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "two-workers"])
def test_figures_are_printed_at_the_end(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "test_measured.py").write_text(TESTS)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.plugins.figures", "-p", "no:cacheprovider",
         *workers, "test_measured.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = proc.stdout.split(" figures ", 1)[-1]
    assert "test_measured.py::test_passes\nparity: 47 of 47" in summary, proc.stdout
    assert "test_measured.py::test_fails\nsoak: lost 3" in summary, proc.stdout
