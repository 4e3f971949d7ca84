"""Loading a benchmark script by its path: bench/ is a folder of scripts, not a package
the tests can import by name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[3] / "bench"


def load_script(path: Path, name: str) -> ModuleType:
    """Runs the script's module level as module `name`. Registered in sys.modules while it
    runs, as an import would be: dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module
