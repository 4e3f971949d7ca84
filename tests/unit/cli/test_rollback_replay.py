"""Promote B over A, roll back, replay again: the alerts are A's, byte for byte."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from models.train import ARTIFACTS
from streams.cli.main import build
from synth.generate import generate
from tests.model_util import fewer_trees


def test_rollback_restores_the_previous_alerts_byte_for_byte(tmp_path: Path) -> None:
    events = str(
        generate(tmp_path / "corpus", accounts=60, hours=3, seed=5, bad_rate=0.0).events_path
    )
    other = fewer_trees(tmp_path / "b")
    env = {
        "VIGIL_STORE_URL": f"sqlite:///{tmp_path / 'vigil.db'}",
        "VIGIL_MODEL_REGISTRY": str(tmp_path / "registry"),
        "VIGIL_MODEL_PATH": "champion",  # replay runs whatever the registry's champion is
        "USER": "olga",
    }
    app = build()

    def vigil(*args: str) -> str:
        r = CliRunner().invoke(app, list(args), env=env)
        assert r.exit_code == 0, r.output
        return r.output

    def replay(name: str) -> bytes:
        out = tmp_path / f"{name}.jsonl"
        vigil("replay", events, "--alerts", str(out))
        return out.read_bytes()

    a = vigil("models", "add", str(ARTIFACTS), "--why", "shipped").split()[1]
    b = vigil("models", "add", str(other), "--why", "fewer trees", "--parent", a).split()[1]
    vigil("models", "promote", a, "--why", "baseline")
    first = replay("a")
    vigil("models", "promote", b, "--why", "try B")
    with_b = replay("b")
    vigil("models", "rollback", "--why", "B was worse")
    again = replay("a-again")

    card = lambda p: orjson.loads((p / "classifier.card.json").read_bytes())["version"]  # noqa: E731
    versions = lambda raw: {orjson.loads(x)["model_version"] for x in raw.splitlines()}  # noqa: E731
    assert first and versions(first) == {card(ARTIFACTS)}
    assert versions(with_b) == {card(other)}
    strip = lambda raw: [  # noqa: E731
        {k: v for k, v in orjson.loads(x).items() if k != "model_version"} for x in raw.splitlines()
    ]
    assert strip(with_b) != strip(first)  # B really alerts differently on this input
    assert again == first
