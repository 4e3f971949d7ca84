"""The Apache Kafka broker the tests run against: a private single node per session, or
the cluster VIGIL_KAFKA_BOOTSTRAP names.

The session's broker starts with deploy/kafka/kafka-up.sh on a free loopback port, with its
data in the session's temporary directory, and stops at the end. A missing java or mvn
fails the test with the install command; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "deploy" / "kafka"


INSTALL_HINT = {
    "java": "install a JDK 17+: `sudo apt-get install -y openjdk-17-jre-headless` "
    "(macOS: `brew install openjdk@17`)",
    "mvn": "install Maven: `sudo apt-get install -y maven` (macOS: `brew install maven`); "
    "it fetches the broker jars once into deploy/kafka/lib/",
}


@dataclass
class KafkaBroker:
    bootstrap: str
    port: int
    data_dir: Path | None  # None: an external cluster this session does not control

    @property
    def managed(self) -> bool:
        return self.data_dir is not None

    def _env(self) -> dict[str, str]:
        assert self.data_dir is not None
        return {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        _run_script("kafka-up.sh", self._env())

    def stop(self, wipe: bool = False) -> None:
        _run_script("kafka-down.sh", self._env(), "--wipe" if wipe else "")

    def restart(self) -> None:
        if not self.managed:
            raise RuntimeError("cannot restart an external cluster")
        self.stop()
        self.start()


def require_tools() -> None:
    missing = ["java"] if shutil.which("java") is None else []
    have_jars = any((KAFKA_DIR / "lib").glob("kafka_2.13-*.jar"))
    if not have_jars and shutil.which("mvn") is None:
        missing.append("mvn")
    if missing:
        pytest.fail(
            "the Kafka tests start a real broker and need "
            + "; ".join(f"{t}: {INSTALL_HINT[t]}" for t in missing)
            + ". Or point them at a running cluster with VIGIL_KAFKA_BOOTSTRAP=host:port.",
            pytrace=False,
        )


def _run_script(name: str, env: dict[str, str], *args: str) -> None:
    cmd = [str(KAFKA_DIR / name), *[a for a in args if a]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"{name} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(n: int) -> int:
    """The first of n consecutive free loopback ports, below the ephemeral range.

    A broker that a test kills and restarts must get its ports back. Inside the ephemeral
    range, the other nodes' reconnect attempts to a dead node's port can be handed that
    very port as their source and connect to themselves, which holds it. A restarted node
    once failed with "Address already in use" in the fault soak, most likely so."""
    import random

    top = min(_ephemeral_low(), 65536) - n
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(max(1024, top - 12000), top)
        try:
            for p in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {n} consecutive free loopback ports below the ephemeral range")


def start_private_broker(base: Path) -> KafkaBroker:
    require_tools()
    port = free_port_run(2)  # the broker's port and its controller's
    broker = KafkaBroker(f"127.0.0.1:{port}", port, base / f"kafka-{port}")
    broker.start()
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    external = os.environ.get("VIGIL_KAFKA_BOOTSTRAP")
    if external:
        yield KafkaBroker(external, 0, None)
        return
    broker = start_private_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def restartable_kafka(
    kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    """A broker the test may stop and start: the session's own, or a private one."""
    if kafka_broker.managed:
        yield kafka_broker
        return
    broker = start_private_broker(tmp_path_factory.mktemp("kafka-restart"))
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
