"""Pytest fixture for a real Prometheus server.

The server is Debian's `prometheus` package (`/usr/bin/prometheus`, or whatever `prometheus`
is first on PATH). It listens on a free loopback port, keeps its TSDB in a temporary
directory and scrapes the targets the test names every second, so a test sees real samples
within a few seconds. A missing binary fails the test with the install command.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.plugins.processes import die_with_parent

INSTALL_HINT = (
    "Prometheus is not installed: `sudo apt-get install -y prometheus` "
    "(it ships promtool too), or run .ci/install-obs.sh"
)
SCRAPE_INTERVAL_S = 1


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    targets: dict[str, list[str]] = field(default_factory=dict)

    def api(self, path: str, **params: Any) -> Any:
        """GET an /api/v1 endpoint; returns `data`, raises on an error status."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def wait_for(self, expr: str, timeout_s: float = 30.0) -> list[dict]:
        """Polls until `expr` returns at least one series."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no series for {expr!r} after {timeout_s}s\n{self.log()}")
            time.sleep(0.5)

    def wait_scrapes(self, count: int = 2) -> None:
        """Waits until every target has been scraped `count` more times."""
        time.sleep(count * SCRAPE_INTERVAL_S + 0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class PromQLError(RuntimeError):
    """Prometheus answered a query or API call with an error."""


def write_config(
    path: Path, targets: dict[str, list[str]], rule_files: list[Path] | None = None
) -> Path:
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addrs}]}
            for job, addrs in targets.items()
        ],
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(
    workdir: Path,
    targets: dict[str, list[str]],
    rule_files: list[Path] | None = None,
    timeout_s: float = 30.0,
) -> PrometheusServer:
    """Starts Prometheus scraping `targets` ({job: ["127.0.0.1:port", ...]})."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "prometheus.yml", targets, rule_files)
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path, dict(targets))
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_prometheus(server)
            raise TimeoutError(f"prometheus not ready after {timeout_s}s\n{server.log()}")
        time.sleep(0.2)


def stop_prometheus(server: PrometheusServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    """Returns start(targets, rule_files=None) -> PrometheusServer; stops them all after."""
    started: list[PrometheusServer] = []

    def start(
        targets: dict[str, list[str]], rule_files: list[Path] | None = None
    ) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", targets, rule_files)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_prometheus(server)
