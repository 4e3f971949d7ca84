"""`vigil models`: add, list, show, promote, roll back; audited; bad models refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from console.schema import audit_log
from console.store import open_store
from models.train import ARTIFACTS
from streams.cli.main import build
from tests.model_util import copy_model, fewer_trees


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fewer_trees(tmp_path_factory.mktemp("b") / "model")


@pytest.fixture
def vigil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_STORE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.setenv("VIGIL_MODEL_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("USER", "olga")
    app = build()

    def run(*args: str, ok: bool = True) -> str:
        r = CliRunner().invoke(app, list(args))
        if ok:
            assert r.exit_code == 0, r.output
            return r.output
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), r.output
        return lines[0]

    return run


def _version(out: str) -> str:
    return out.split()[1]  # "added m-... (clf-...) as candidate: PATH"


def _stages(vigil) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rows = vigil("models", "list").splitlines()[1:]
    return {r.split()[0]: r.split()[1] for r in rows}


def test_promote_and_roll_back_are_audited(vigil, other: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = _version(vigil("models", "add", str(ARTIFACTS), "--why", "the shipped model"))
    b = _version(vigil("models", "add", str(other), "--why", "fewer trees", "--parent", a[:8]))
    assert (tmp_path / "registry" / a / "classifier.onnx").is_file()
    assert _stages(vigil) == {a: "candidate", b: "candidate"}
    assert "already registered" in vigil("models", "add", str(ARTIFACTS), "--why", "x", ok=False)

    vigil("models", "promote", a, "--why", "baseline")
    vigil("models", "promote", b, "--why", "try it beside", "--stage", "shadow")
    assert _stages(vigil) == {a: "champion", b: "shadow"}
    out = vigil("models", "promote", b, "--why", "better on ext-a", "--actor", "ivan")
    assert f"replacing {a}" in out
    assert _stages(vigil) == {a: "retired", b: "champion"}
    shown = vigil("models", "show", "champion")
    assert f"version: {b}" in shown and f"parent: {a}" in shown and "fewer trees" in shown
    assert "ivan: promote -> champion" in shown

    out = vigil("models", "rollback", "--why", "benign alerts doubled")
    assert f"{a} is champion again" in out
    assert _stages(vigil) == {a: "champion", b: "retired"}
    assert "no previous champion" in vigil("models", "rollback", "--why", "again", ok=False)

    db = open_store(str(tmp_path / "vigil.db"))
    with db.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    db.close()
    got = [(r.actor, r.action, r.target, json.loads(r.detail)["why"]) for r in rows]
    assert got == [
        ("olga", "model_add", a, "the shipped model"),
        ("olga", "model_add", b, "fewer trees"),
        ("olga", "model_promote", a, "baseline"),
        ("olga", "model_promote", b, "try it beside"),
        ("ivan", "model_promote", b, "better on ext-a"),
        ("olga", "model_rollback", a, "benign alerts doubled"),
    ]


def test_a_failing_model_is_refused_and_the_champion_stays(
    vigil, other: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    a = _version(vigil("models", "add", str(ARTIFACTS), "--why", "shipped"))
    b = _version(vigil("models", "add", str(other), "--why", "candidate"))
    vigil("models", "promote", a, "--why", "baseline")

    mixed = copy_model(tmp_path / "mixed")
    (mixed / "classifier.onnx").write_bytes((other / "classifier.onnx").read_bytes())
    assert "disagree" in vigil("models", "add", str(mixed), "--why", "x", ok=False)
    missing = copy_model(tmp_path / "missing")
    (missing / "classifier.skl.pkl").unlink()
    assert "missing classifier.skl.pkl" in vigil(
        "models", "add", str(missing), "--why", "x", ok=False
    )

    # Registered files damaged afterwards: the promotion is refused, the champion stays.
    onnx = tmp_path / "registry" / b / "classifier.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10])
    err = vigil("models", "promote", b, "--why", "go", ok=False)
    assert f"champion {a} stays" in err and "changed since registration" in err
    assert _stages(vigil) == {a: "champion", b: "candidate"}
    assert "--why must say why" in vigil("models", "promote", a, "--why", " ", ok=False)
    assert "not a registered version" in vigil("models", "show", "m-nope", ok=False)


def test_the_registry_needs_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_STORE_URL", raising=False)
    r = CliRunner().invoke(build(), ["models", "list"])
    assert r.exit_code == 2 and "give --store" in r.output
