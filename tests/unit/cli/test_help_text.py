"""Help prints what the commands' texts say: Rich markup, Typer's default, took
`[worker]`, `[fusion]` or `[[rules]]` for tags and dropped them from `--help`."""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from streams.cli.main import build

BRACKETED = re.compile(r"\[[^\]\s]+\]+")  # [worker], [[rules]]; not "[default: 1]"


def _commands(group: Any, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (Typer's click, not necessarily click's)
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _texts(cmd: Any) -> list[str]:
    return [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]


def test_every_bracketed_name_in_a_help_text_reaches_the_help_output():
    app = build()
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root):
        names = {m for text in _texts(cmd) for m in BRACKETED.findall(text)}
        if not names:
            continue
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
        for name in names:
            assert name in out, f"vigil {' '.join(path)} --help lost {name}:\n{out}"
            checked += 1
    assert checked >= 3  # the worker's [worker], control config's [fusion] and [[rules]]
