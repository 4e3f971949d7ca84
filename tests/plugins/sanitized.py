"""Pytest plugin: import the compiled extensions from the sanitizer build.

Loaded with `-p tests.plugins.sanitized` (tests/sanitize.py does it) before anything
imports streams, it points the extension modules at the files built in
$VIGIL_SANITIZED_EXT, and fails the session if any of them came from elsewhere.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.sanitize import MODULES, built_path

_DIR = os.environ.get("VIGIL_SANITIZED_EXT")


class _Finder:
    """Finds the sanitizer build of the extension modules, and nothing else."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if not _DIR or name not in MODULES:
            return None
        where = built_path(Path(_DIR), name)
        loader = importlib.machinery.ExtensionFileLoader(name, str(where))
        return importlib.util.spec_from_file_location(name, where, loader=loader)


if _DIR:
    if any(m in sys.modules for m in MODULES):
        raise RuntimeError("an extension was imported before the sanitizer plugin")
    sys.meta_path.insert(0, _Finder())


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _DIR:
        raise pytest.UsageError("VIGIL_SANITIZED_EXT is not set: run tests/sanitize.py")
    for name in MODULES:
        mod = importlib.import_module(name)
        if Path(mod.__file__).resolve() != built_path(Path(_DIR), name).resolve():
            raise pytest.UsageError(f"{name} was loaded from {mod.__file__}, not the build")
    maps = Path("/proc/self/maps").read_text()
    if "libasan" not in maps or "libubsan" not in maps:
        raise pytest.UsageError("the ASan and UBSan runtimes are not loaded in this process")


def pytest_report_header() -> str:
    return f"compiled extensions: the ASan/UBSan build in {_DIR}"
