"""Runbooks name only things that exist: every `vigil ...` command (with its options), every
console request (`GET /path`, `POST /path`, with its query parameters), every dashboard and
every panel, row or annotation they point at in italics.

Commands run for real, as `vigil ... --help` through the CLI's own entry point.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from starlette.routing import Match
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[3]
RUNBOOKS = sorted((REPO / "docs" / "runbooks").glob("*.md"))
CODE = re.compile(r"`([^`]+)`")
REQUEST = re.compile(r"^(GET|POST) (/\S*)$")
SHELL_STOP = {"<", ">", "|", ";", "&&"}


def spans(path: Path) -> list[str]:
    return [" ".join(m.group(1).split()) for m in CODE.finditer(path.read_text())]


def commands() -> list[tuple[str, str]]:
    return [(p.name, s) for p in RUNBOOKS for s in spans(p) if s.startswith("vigil ")]


def requests() -> list[tuple[str, str]]:
    return [(p.name, s) for p in RUNBOOKS for s in spans(p) if REQUEST.match(s)]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    from streams.cli.main import build

    return build()


def split_command(text: str) -> tuple[list[str], list[str]]:
    """(the words before the first option, the options named) of `vigil ...`."""
    words = []
    for word in shlex.split(text)[1:]:
        if word in SHELL_STOP:
            break
        words.append(word)
    first = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
    options = [w.split("=", 1)[0] for w in words if w.startswith("--")]
    return words[:first], options


def test_runbooks_name_commands_and_requests() -> None:
    """The extraction below finds something, so the tests that follow cannot pass empty."""
    assert len(commands()) >= 10
    assert len(requests()) >= 3


@pytest.mark.parametrize(("runbook", "command"), commands(), ids=lambda v: str(v)[:60])
def test_runbook_command_exists(cli: typer.Typer, runbook: str, command: str) -> None:
    words, options = split_command(command)
    result = CliRunner().invoke(cli, [*words, "--help"], env={"COLUMNS": "240"}, prog_name="vigil")
    assert result.exit_code == 0, f"{runbook}: `{command}` -> {result.output[-500:]}"
    for option in options:
        assert option in result.output, f"{runbook}: `{command}`: no option {option}"


@pytest.fixture(scope="module")
def console_routes(tmp_path_factory: pytest.TempPathFactory) -> list:
    from console.app import create_app
    from console.store import open_store

    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('store') / 'runbooks.db'}")
    from console.metrics import flat_routes

    # Every router the console includes has no prefix, so the paths are the routes' own.
    return [route for prefix, route in flat_routes(create_app(store).routes) if not prefix]


@pytest.mark.parametrize(("runbook", "request_line"), requests(), ids=lambda v: str(v)[:60])
def test_runbook_console_request_exists(console_routes: list, runbook: str, request_line: str):
    method, target = REQUEST.match(request_line).groups()  # type: ignore[union-attr]
    path, _, query = target.partition("?")
    path = re.sub(r"\{[a-z_]+\}", "x", path)  # a placeholder stands for any one segment
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    matched = [
        r for r in console_routes if hasattr(r, "dependant") and r.matches(scope)[0] == Match.FULL
    ]
    assert matched, f"{runbook}: no console route for {request_line}"
    params = {p.split("=", 1)[0] for p in query.split("&") if p}
    accepted = query_params(matched[0].dependant)
    assert params <= accepted, f"{runbook}: {request_line}: unknown {params - accepted}"


def query_params(dependant) -> set[str]:  # type: ignore[no-untyped-def]
    """The query parameters a route accepts, its dependencies' included."""
    names = {q.alias for q in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_params(sub)
    return names


def dashboard_names() -> tuple[set[str], set[str]]:
    titles, parts = set(), set()
    for path in (REPO / "dashboards" / "json").glob("*.json"):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        parts |= {p["title"] for p in board["panels"]}
        parts |= {a["name"] for a in board.get("annotations", {}).get("list", [])}
    return titles, parts


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_dashboards_and_panels_exist(runbook: Path) -> None:
    titles, parts = dashboard_names()
    text = runbook.read_text()
    for name in re.findall(r"\*\*(Vigil / [^*]+)\*\*", text):
        assert name in titles, f"{runbook.name}: no dashboard {name!r}"
    for name in re.findall(r"(?<![*\w])\*([^*\n]+)\*(?!\*)", text):
        assert name in parts, f"{runbook.name}: no panel, row or annotation {name!r}"


def test_a_step_that_does_not_exist_is_caught(cli: typer.Typer, console_routes: list) -> None:
    """The checks above fail on the steps this suite was written to catch."""
    words, _ = split_command("vigil model rollback --to previous")
    assert CliRunner().invoke(cli, [*words, "--help"]).exit_code != 0
    words, options = split_command("vigil replay FILE --per-detector-threshold 0.9")
    help_text = CliRunner().invoke(cli, [*words, "--help"], env={"COLUMNS": "240"}).output
    assert options == ["--per-detector-threshold"] and options[0] not in help_text
    scope = {"type": "http", "method": "POST", "path": "/alerts/bulk-close", "root_path": ""}
    posts = [r for r in console_routes if hasattr(r, "dependant") and "POST" in r.methods]
    assert not any(
        r.matches(scope)[0] == Match.FULL and r.path == "/alerts/bulk-close" for r in posts
    )
