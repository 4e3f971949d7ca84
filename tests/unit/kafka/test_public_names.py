"""The rest of streams/kafka/ reaches Faust, mode, aiokafka and kafka-python through their
public names only: every private name lives in the adapters (internals*.py), which
test_internals.py pins."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
KAFKA_PKG = ROOT / "streams" / "kafka"
LIBRARIES = ("faust", "aiokafka", "mode", "kafka")
# (file, attribute): why it is not a library's private name.
ALLOWED = {
    ("held_dead_letters.py", "_dead_letter"): "Vigil's own Processor method, not a library's",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_library(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in LIBRARIES


def _derives_from_library(obj: Any) -> bool:
    return inspect.isclass(obj) and any(_from_library(k.__module__) for k in obj.__mro__[1:])


def private_uses(source: str, filename: str) -> list[str]:
    """Each use of a Kafka library's private name in `source`, as `file:line: what`."""
    tree = ast.parse(source)
    found: list[str] = []
    library_names: set[str] = set()  # names bound to a library module or object
    derived_names: set[str] = set()  # names bound to classes derived from a library's

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _from_library(alias.name):
                    library_names.add(alias.asname or alias.name.split(".")[0])
                    if any(_is_private(p) for p in alias.name.split(".")):
                        report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                if _from_library(node.module):
                    library_names.add(bound)
                    if _is_private(alias.name) or any(
                        _is_private(p) for p in node.module.split(".")
                    ):
                        report(node, f"from {node.module} import {alias.name}")
                elif node.module.startswith("streams."):
                    obj = getattr(importlib.import_module(node.module), alias.name, None)
                    if _derives_from_library(obj):
                        derived_names.add(bound)

    def root(expr: ast.AST) -> str | None:
        while isinstance(expr, ast.Attribute | ast.Call | ast.Subscript):
            expr = expr.value if not isinstance(expr, ast.Call) else expr.func
        return expr.id if isinstance(expr, ast.Name) else None

    def library_class(node: ast.ClassDef, local: set[str]) -> bool:
        return any(root(b) in library_names | derived_names | local for b in node.bases)

    local_derived: set[str] = set()
    for node in tree.body:  # classes in order, so a class may build on one above it
        if isinstance(node, ast.ClassDef) and library_class(node, local_derived):
            local_derived.add(node.name)
            for sub in ast.walk(node):
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and _is_private(
                    sub.name
                ):
                    report(sub, f"{node.name} defines {sub.name} over a library class")
                if (
                    isinstance(sub, ast.Attribute)
                    and _is_private(sub.attr)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id in ("self", "cls")
                ):
                    report(sub, f"{node.name} uses self.{sub.attr} in a library subclass")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls") or (Path(filename).name, node.attr) in ALLOWED:
                continue
            report(node, f"{ast.unparse(node)}")
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and root(t) in library_names:
                report(node, f"assigns {ast.unparse(t)}, a library's global")
    return found


def _runtime_modules() -> list[Path]:
    return sorted(p for p in KAFKA_PKG.glob("*.py") if not p.name.startswith("internals"))


def test_the_rest_of_streams_kafka_uses_public_library_names_only():
    found = []
    for path in _runtime_modules():
        found += private_uses(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_the_allow_list_is_still_needed():
    used = defaultdict(set)
    for path in _runtime_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                used[path.name].add(node.attr)
    assert [k for k in ALLOWED if k[1] not in used[k[0]]] == []


@pytest.mark.parametrize(
    "source",
    [
        "from faust.streams import _current_event\n",
        "import faust.transport._cython\n",
        "def f(c):\n    c._fetch_max_wait_ms = 5\n",
        "from aiokafka import conn\nconn.READER_LIMIT = 1\n",
        "from aiokafka.consumer import fetcher\nfetcher.PartitionRecords = object\n",
        "from faust.transport.drivers import aiokafka as fa\n"
        "class C(fa.Consumer):\n    def f(self):\n        return self._acked\n",
        "from faust.transport.drivers import aiokafka as fa\n"
        "class C(fa.Consumer):\n    def _new_offset(self, tp):\n        return 1\n",
        "from streams.kafka.internals import AppHooks\n"
        "class A(AppHooks):\n    async def _on_partitions_revoked(self, r):\n        pass\n",
        "from streams.kafka.internals import AppHooks\n"
        "class A(AppHooks):\n    pass\nclass B(A):\n    def f(self):\n        return self._conf\n",
    ],
)
def test_the_check_finds_each_kind_of_private_use(source: str):
    assert private_uses(source, "probe.py"), source


def test_the_check_leaves_own_names_alone():
    source = (
        "from streams.kafka import _records\n"
        "class Own:\n    def _f(self):\n        return self._g + _records.parse\n"
        "def _helper():\n    return 1\n"
    )
    assert private_uses(source, "probe.py") == []


def test_the_check_reads_every_runtime_module_but_the_adapters():
    names = {p.name for p in _runtime_modules()}
    assert {"app.py", "consumer.py", "fetch.py", "checkpoint.py", "stale_state.py"} <= names
    assert not {n for n in names if n.startswith("internals")}
