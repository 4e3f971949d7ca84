"""The Faust, mode and aiokafka versions the worker supports (streams/kafka/
internals_versions.py): pinned in constraints.txt, checked before any work, named in one
line when they differ."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import checks
from streams.kafka import internals_versions

ROOT = Path(__file__).resolve().parents[3]


def test_supported_versions_are_the_ones_pinned_in_constraints():
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {d: pins[d].strip() for d in internals_versions.SUPPORTED} == (
        internals_versions.SUPPORTED
    )


def test_the_installed_libraries_are_the_supported_ones():
    internals_versions.check_versions()  # raises when this environment drifted from the pins


def test_a_mismatch_names_the_installed_and_supported_versions_in_one_line():
    installed = {**internals_versions.SUPPORTED, "aiokafka": "0.15.0"}
    with pytest.raises(internals_versions.UnsupportedVersions) as err:
        internals_versions.check_versions(installed.__getitem__)
    msg = str(err.value)
    assert "\n" not in msg
    assert "installed aiokafka 0.15.0;" in msg
    assert "faust-streaming 0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1" in msg
    assert internals_versions.ALLOW_ENV in msg


def test_a_missing_library_is_named_as_none():
    def version(dist: str) -> str:
        if dist == "mode-streaming":
            raise importlib.metadata.PackageNotFoundError(dist)
        return internals_versions.SUPPORTED[dist]

    with pytest.raises(internals_versions.UnsupportedVersions, match="mode-streaming none;"):
        internals_versions.check_versions(version)


def test_the_worker_stops_with_one_line_before_any_work_on_other_versions():
    code = (
        "import streams.kafka.internals_versions as v\n"
        "v.SUPPORTED['aiokafka'] = '0.0.1'\n"
        "import sys; sys.argv = ['vigil', 'worker']\n"
        "from streams.cli.main import main; main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: installed aiokafka 0.14.0;"), r.stderr
    assert "aiokafka 0.0.1" in lines[0]


def test_the_escape_hatch_only_warns(monkeypatch, capsys):
    monkeypatch.setitem(internals_versions.SUPPORTED, "aiokafka", "0.0.1")
    checks.kafka_libraries({internals_versions.ALLOW_ENV: "1"})
    assert "warning: installed aiokafka" in capsys.readouterr().err
    with pytest.raises(Exception) as err:  # typer.Exit, as `fail` gives it
        checks.kafka_libraries({internals_versions.ALLOW_ENV: "0"})
    assert getattr(err.value, "exit_code", None) == 2
