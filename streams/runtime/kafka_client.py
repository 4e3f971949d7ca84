"""Kafka client options from the one `[kafka]` config, for every client Vigil runs.

The worker (Faust/aiokafka), `vigil produce`, `vigil alerts tail`, the topic admin, the
console's publisher and `vigil store-sink` all connect through these two functions, so
SASL and TLS mean the same thing everywhere: a SASL protocol without a mechanism is PLAIN,
with the configured user and password; TLS verifies against `ssl_cafile` when given.
"""

from __future__ import annotations

from typing import Any

from streams.core.config import KafkaConfig


def servers(cfg: KafkaConfig) -> list[str]:
    return [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()]


def security_options(cfg: KafkaConfig) -> dict[str, Any]:
    """kafka-python's security arguments (no bootstrap servers)."""
    opts: dict[str, Any] = {"security_protocol": cfg.security_protocol}
    if cfg.security_protocol.startswith("SASL"):
        opts.update(
            sasl_mechanism=cfg.sasl_mechanism or "PLAIN",
            sasl_plain_username=cfg.sasl_username,
            sasl_plain_password=cfg.sasl_password,
        )
    if cfg.security_protocol in ("SSL", "SASL_SSL") and cfg.ssl_cafile:
        opts["ssl_cafile"] = cfg.ssl_cafile
    return opts


def kafka_python_options(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection options for kafka-python clients (produce, tail, admin, console)."""
    return {
        "bootstrap_servers": servers(cfg),
        "bootstrap_timeout_ms": round(cfg.bootstrap_timeout_s * 1000),
        **security_options(cfg),
    }


def broker_url(cfg: KafkaConfig) -> str:
    return ";".join(f"kafka://{s}" for s in servers(cfg))


def faust_credentials(cfg: KafkaConfig) -> Any:
    """Faust's credentials object for the same security settings, or None."""
    import ssl

    import faust

    sec = security_options(cfg)
    proto = sec["security_protocol"]
    if proto == "PLAINTEXT":
        return None
    context = None
    if proto in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=sec.get("ssl_cafile"))
    if proto == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=sec["sasl_plain_username"],
        password=sec["sasl_plain_password"],
        mechanism=sec["sasl_mechanism"],
        ssl_context=context,
    )
