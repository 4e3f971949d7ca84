"""Helpers of the tests that pin library internals (tests/unit/kafka/test_internals*.py)."""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_apart(coro: Any) -> Any:
    """asyncio.run on a thread of its own: in the whole suite an earlier test can leave this
    thread marked as running a loop, where asyncio.run refuses to start (seen in CI)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def params(fn: Any) -> list[str]:
    """The names of a function's parameters: what a pinned private method must still take."""
    return list(inspect.signature(fn).parameters)
