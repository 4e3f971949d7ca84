"""`vigil console-user` and `vigil console` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from console.store import open_store
from console.users import authenticate_password, authenticate_token
from streams.cli.console import default_labels_file, register
from tests.console_live import free_port

# The same wiring `vigil` does for plugin modules, on an app of our own.
LAUNCH = (
    "import sys, typer; from streams.cli.console import register; "
    "app = typer.Typer(); ev = typer.Typer(); app.add_typer(ev, name='eval'); "
    "register(app, ev); app(sys.argv[1:], prog_name='vigil')"
)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    ev = typer.Typer()
    app.add_typer(ev, name="eval")
    register(app, ev)
    return app


def test_user_management(cli: typer.Typer, tmp_path: Path) -> None:
    db = str(tmp_path / "vigil.db")
    run = CliRunner().invoke
    r = run(
        cli,
        ["console-user", "add", "ana", "--role", "analyst", "--password-stdin", "--store", db],
        input="long-enough-pw\n",
    )
    assert r.exit_code == 0, r.output
    r = run(
        cli,
        ["console-user", "add", "bob", "--role", "root", "--password-stdin", "--store", db],
        input="long-enough-pw\n",
    )
    assert r.exit_code != 0 and "role must be one of" in r.output
    r = run(cli, ["console-user", "add", "bob", "--password-stdin", "--store", db], input="short\n")
    assert r.exit_code != 0
    add_carl = [
        "console-user",
        "add",
        "carl",
        "--role",
        "viewer",
        "--password-stdin",
        "--store",
        db,
    ]
    r = run(cli, add_carl, input=b"\xff\xfe-not-text-pw\n")
    assert r.exit_code == 2 and "--password-stdin" in r.output and "not UTF-8" in r.output
    assert run(cli, ["console-user", "list", "--store", db]).output == "ana\tanalyst\n"
    token = run(cli, ["console-user", "token", "ana", "--store", db]).output.strip()
    # A line ended the Windows way (a file written there, piped in) keeps no carriage return.
    assert run(cli, add_carl, input=b"carl-long-pw\r\n").exit_code == 0
    with open_store(db) as st:
        assert authenticate_password(st, "carl", "carl-long-pw").role == "viewer"
        assert authenticate_password(st, "ana", "long-enough-pw").role == "analyst"
        assert authenticate_token(st, token).name == "ana"
    assert run(cli, ["console-user", "remove", "carl", "--store", db]).exit_code == 0
    assert run(cli, ["console-user", "remove", "ana", "--store", db]).exit_code == 0
    assert run(cli, ["console-user", "remove", "ana", "--store", db]).exit_code != 0


def test_console_command_serves_the_app(tmp_path: Path) -> None:
    db = tmp_path / "vigil.db"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "console", "--store", str(db), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/alerts",
                    follow_redirects=False,
                    headers={"accept": "text/html"},
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "console did not start"
                time.sleep(0.2)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert httpx.get(f"http://127.0.0.1:{port}/login").status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert "no console users yet" in out
    assert db.exists()
    assert default_labels_file(str(db)) == tmp_path / "analyst-labels.jsonl"
    assert default_labels_file("postgresql+psycopg://u@h/db") is None
