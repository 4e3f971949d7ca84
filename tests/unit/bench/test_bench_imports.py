"""Every benchmark script still imports and has its entry point.

Benchmarks run by hand, not in `make test`, so a helper renamed elsewhere broke
bench/bench_kafka.py unnoticed (it imported `free_port_pair` after that was replaced).
Importing each script runs its module level, which is where such breaks show.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.bench.scripts import BENCH, load_script

# Helpers the scripts import, not scripts themselves: imported by the scripts that use them.
HELPERS = {"__init__.py", "common.py", "kafka_worker.py"}
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in HELPERS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_bench_script_imports_and_has_main(script: Path):
    module = load_script(script, f"bench_check_{script.stem}")
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
