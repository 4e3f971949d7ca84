"""Bad config and bad arguments give a message that names the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.core.config import ConfigError
from streams.core.config_load import config_from_dict, from_env, load_config

VIGIL = [sys.executable, "-m", "streams"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"engine": {"windw_s": 300}}, "windw_s"),
        ({"engine": {"window_s": "300"}}, "engine.window_s"),
        ({"engine": {"window_s": 7}}, "divide a day"),
        ({"kafka": {"processing_guarantee": "twice"}}, "processing_guarantee"),
        ({"kafka": {"input_partitioner": "fnv1a"}}, "kafka.input_partitioner: 'fnv1a' is not one"),
        ({"fusion": {"alert_threshold": 2}}, "alert_threshold"),
        ({"rules": [{"name": "r", "feature": "requests", "op": "!=", "threshold": 1}]}, "op"),
    ],
)
def test_bad_config_names_the_key(data, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(data)


def test_config_file_and_env(tmp_path: Path) -> None:
    p = tmp_path / "vigil.toml"
    p.write_text('[engine]\nwindow_s = 600\n[kafka]\nprocessing_guarantee = "exactly_once"\n')
    cfg = from_env(load_config(p), {"VIGIL_KAFKA_BOOTSTRAP": "broker:9093"})
    assert cfg.engine.window_s == 600
    assert cfg.kafka.processing_guarantee == "exactly_once"
    assert cfg.kafka.bootstrap_servers == "broker:9093"
    p.write_text("[engine\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def _vigil(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VIGIL, *args], capture_output=True, input=stdin, timeout=300)


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    r = _vigil("replay", str(tmp_path / "nope.jsonl"))
    assert r.returncode == 2 and b"does not exist" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nwindow_s = -1\n")
    r = _vigil("replay", "-", "--config", str(bad), stdin=b"")
    assert r.returncode == 2 and b"engine.window_s" in r.stderr
    r = _vigil("generate", "--out", str(tmp_path), "--accounts", "3")
    assert r.returncode == 2 and b"accounts" in r.stderr
    r = _vigil("replay", "-", "--hold")
    assert r.returncode == 2 and b"--metrics-port" in r.stderr


def test_generate_then_replay_from_stdin(tmp_path: Path) -> None:
    r = _vigil(
        "generate", "--out", str(tmp_path), "--accounts", "60", "--hours", "3", "--seed", "5"
    )
    assert r.returncode == 0, r.stderr
    import gzip

    data = gzip.decompress((tmp_path / "events.jsonl.gz").read_bytes())
    alerts, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    r = _vigil("replay", "-", "--alerts", str(alerts), "--dead-letters", str(dead), stdin=data)
    assert r.returncode == 0, r.stderr
    labels = orjson.loads((tmp_path / "labels.json").read_bytes())
    read = int(r.stdout.split(b"read ")[1].split(b" lines")[0].replace(b",", b""))
    assert read == data.count(b"\n")
    rejected = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    injected = labels["injected"]
    # Injected malformed lines and very late events all reach the dead-letter file.
    assert len(rejected) >= injected["malformed"]
    assert all(x["reason"] and "raw" in x for x in rejected)
