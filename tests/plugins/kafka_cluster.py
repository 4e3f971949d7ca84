"""A real three-node Apache Kafka cluster (KRaft), for the fault soak.

It is started by deploy/kafka/kafka-up.sh with BROKERS=3, exactly as `make kafka-up
BROKERS=3` starts it: replication factor 3 and min.insync.replicas 2, so one broker may die
while writes with acks=all go on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.kafka_broker import _run_script, free_port_run, require_tools


@dataclass
class KafkaCluster:
    port: int
    data_dir: Path
    brokers: int = 3

    def node_port(self, node: int) -> int:
        return self.port + 2 * (node - 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.node_port(i)}" for i in range(1, self.brokers + 1))

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BROKERS": str(self.brokers),
            "KAFKA_PORT": str(self.port),
            "KAFKA_DATA_DIR": str(self.data_dir),
        }

    def start(self) -> None:
        """Starts the nodes that are not running (all of them the first time), and waits
        until the cluster is whole."""
        _run_script("kafka-up.sh", self._env())
        self.wait_whole()

    def wait_whole(self, timeout_s: float = 60.0) -> None:
        """Until each node's metadata lists every broker. A node logs that it started
        before the others have all learned of it; a client whose first metadata lacked a
        broker then failed when that broker was named the controller (kafka-python's admin,
        UnknownBrokerIdError: 3, in 2 runs of 10 of the leader-move test)."""
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        for node in range(1, self.brokers + 1):
            while True:
                admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self.node_port(node)}")
                try:
                    seen = {b["broker_id"] for b in admin.describe_cluster()["brokers"]}
                finally:
                    admin.close()
                if len(seen) == self.brokers:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"node {node} knows brokers {sorted(seen)} of {self.brokers} after "
                        f"{timeout_s:.0f} s"
                    )
                time.sleep(0.5)

    def stop(self, wipe: bool = False) -> None:
        _run_script("kafka-down.sh", self._env(), "--wipe" if wipe else "")

    def kill9(self, node: int) -> None:
        pid = int((self.data_dir / f"node-{node}" / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)

    def leader(self, topic: str, partition: int) -> int:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            (desc,) = admin.describe_topics([topic])
        finally:
            admin.close()
        for p in desc["partitions"]:
            if p["partition_index"] == partition:
                return int(p["leader_id"])
        raise AssertionError(f"{topic}[{partition}] not found")


@pytest.fixture(scope="module")
def kafka_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    require_tools()
    cluster = KafkaCluster(free_port_run(6), tmp_path_factory.mktemp("kafka3"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(wipe=True)
