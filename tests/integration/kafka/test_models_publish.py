"""`vigil models promote --publish` and `rollback --publish` put the version on the control
topic, where running workers pick it up (test_kafka_control.py covers the workers' side)."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from models.train import ARTIFACTS
from streams.cli.main import build
from tests.model_util import fewer_trees


def test_promote_and_rollback_publish_control_records(kafka_env, tmp_path: Path, monkeypatch):
    env = kafka_env
    monkeypatch.setenv("VIGIL_STORE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.setenv("VIGIL_MODEL_REGISTRY", str(tmp_path / "registry"))
    app = build()

    def vigil(*args: str) -> str:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == 0, r.output
        return r.output

    other = fewer_trees(tmp_path / "b")
    a = vigil("models", "add", str(ARTIFACTS), "--why", "shipped").split()[1]
    b = vigil("models", "add", str(other), "--why", "fewer trees").split()[1]
    cfg = str(env.config_path)
    vigil("models", "promote", a, "--why", "baseline", "--config", cfg)  # not published
    vigil("models", "promote", b, "--why", "try it", "--config", cfg, "--publish")
    vigil("models", "rollback", "--why", "worse", "--config", cfg, "--publish")

    records = [orjson.loads(r.value) for r in env.read("control", until=2, timeout_s=30)]
    assert [r["kind"] for r in records] == ["model", "model"]
    assert [r["action"] for r in records] == ["promote", "rollback"]
    assert Path(records[0]["model_path"]).parent.name == b
    assert Path(records[1]["model_path"]).parent.name == a
