"""A real PostgreSQL for the tests: initdb + pg_ctl into a temporary folder, on loopback.

`postgres_server` (session) starts one server; `postgres_url` (function) hands each test a
fresh, empty database on it. As root the server runs as the `postgres` user that Debian's
package creates, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("VIGIL_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = "PostgreSQL 15 server binaries are missing: apt-get install postgresql"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    datadir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).is_file():
            pytest.fail(f"{PG_BIN / tool} not found. {INSTALL_HINT}", pytrace=False)
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                f"no 'postgres' system user to run the server as. {INSTALL_HINT}", pytrace=False
            )
        owner = "postgres"
    # Under /tmp, not pytest's tmp dir: that one is private to root and postgres cannot enter.
    root = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
    datadir, sockdir, log = root / "data", root / "sock", root / "server.log"
    sockdir.mkdir()
    if owner:
        pw = pwd.getpwnam(owner)
        for p in (root, sockdir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    user = "vigil"
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    try:
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(datadir),
                    "-A",
                    "trust",
                    "-U",
                    user,
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                owner,
            ),
            **run,
        )
        opts = (
            f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                owner,
            ),
            **run,
        )
    except subprocess.CalledProcessError as exc:
        detail = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr}\n{detail}", pytrace=False)
    try:
        yield PostgresServer("127.0.0.1", port, user, datadir)
    finally:
        subprocess.run(
            _as_owner(
                [str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"], owner
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
