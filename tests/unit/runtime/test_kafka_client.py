"""One builder of Kafka client options: every client gets the same SASL and TLS settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.core.config import KafkaConfig
from streams.runtime.kafka_client import (
    broker_url,
    faust_credentials,
    kafka_python_options,
    security_options,
)


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("ca")
    key, cert = d / "ca.key", d / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=vigil-test-ca", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert)


def test_sasl_ssl_without_a_mechanism_is_plain_with_the_credentials(cafile: str) -> None:
    k = KafkaConfig(
        bootstrap_servers="a:9093, b:9093",
        security_protocol="SASL_SSL",
        sasl_username="vigil",
        sasl_password="s3cret",
        ssl_cafile=cafile,
    )
    opts = kafka_python_options(k)
    assert opts == {
        "bootstrap_servers": ["a:9093", "b:9093"],
        "bootstrap_timeout_ms": 10_000,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "vigil",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": cafile,
    }
    # The console's publisher and store-sink take the same security options.
    connection = ("bootstrap_servers", "bootstrap_timeout_ms")
    assert security_options(k) == {key: v for key, v in opts.items() if key not in connection}
    creds = faust_credentials(k)
    assert (creds.username, creds.password, creds.mechanism.value) == ("vigil", "s3cret", "PLAIN")
    assert creds.ssl_context is not None
    assert broker_url(k) == "kafka://a:9093;kafka://b:9093"


def test_tls_only_and_plaintext(cafile: str) -> None:
    tls = KafkaConfig(security_protocol="SSL", ssl_cafile=cafile)
    assert kafka_python_options(tls)["ssl_cafile"] == cafile
    assert "sasl_mechanism" not in kafka_python_options(tls)
    assert type(faust_credentials(tls)).__name__ == "SSLCredentials"
    plain = KafkaConfig()
    assert security_options(plain) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(plain) is None


def test_kafka_python_accepts_the_options(cafile: str) -> None:
    # kafka-python checks SASL and TLS arguments when a client is made; no broker needed
    # with an explicit API version.
    from kafka import KafkaProducer

    k = KafkaConfig(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
        ssl_cafile=cafile,
    )
    producer = KafkaProducer(**kafka_python_options(k), api_version=(3, 0))
    try:
        assert producer.config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert producer.config["ssl_cafile"] == cafile
    finally:
        producer.close(timeout=0)


def test_no_client_builds_its_own_options() -> None:
    # The console used to build a second set with different SASL rules.
    root = Path(__file__).resolve().parents[3]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("streams", "console")
        for p in (root / pkg).rglob("*.py")
        if "sasl_plain_username" in p.read_text() and p.name != "kafka_client.py"
    ]
    assert offenders == []


def test_a_client_gives_up_on_brokers_it_cannot_reach_after_bootstrap_timeout_s() -> None:
    """Regression: `vigil produce` and `vigil control` waited 30 s (the client's default)
    to say that nothing listens at the bootstrap address."""
    import socket
    import time

    from kafka.errors import KafkaTimeoutError

    from streams.kafka.produce import make_producer

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", bootstrap_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        make_producer(cfg)
    assert time.monotonic() - t0 < 10
