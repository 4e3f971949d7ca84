"""Every benchmark script still imports and has its entry point.

Benchmarks run by hand, not in `make test`, so a helper renamed elsewhere broke
bench/bench_kafka.py unnoticed (it imported `free_port_pair` after that was replaced).
Importing each script runs its module level, which is where such breaks show.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in {"__init__.py", "common.py"})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_bench_script_imports_and_has_main(script: Path):
    spec = importlib.util.spec_from_file_location(f"bench_check_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as an import would: dataclasses look their module up there.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
