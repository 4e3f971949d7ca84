"""A challenger in shadow: the same alerts it would raise alone, and never in the store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from console.backtests import get_backtest
from console.schema import alerts as alerts_table
from console.store import open_store
from models.train import ARTIFACTS
from streams.cli.main import build
from synth.generate import generate
from tests.model_util import copy_model, fewer_trees


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fewer_trees(tmp_path_factory.mktemp("b") / "model")


def vigil(*args: str, env: dict | None = None) -> str:
    r = CliRunner().invoke(build(), list(args), env=env)
    assert r.exit_code == 0, r.output
    return r.output


def _config(tmp_path: Path, model: Path) -> str:
    cfg = tmp_path / f"{model.parent.name}-{model.name}.toml"
    cfg.write_text(f'model_path = "{model / "classifier.onnx"}"\n')
    return str(cfg)


def _without_config_version(path: Path) -> list[dict]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [{k: v for k, v in r.items() if k != "config_version"} for r in rows]


def test_shadow_alerts_equal_a_replay_with_that_model(
    small_corpus, other: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    events = str(small_corpus[0])
    alone_a, alone_b = tmp_path / "alone-a.jsonl", tmp_path / "alone-b.jsonl"
    champ, shadow = tmp_path / "champion.jsonl", tmp_path / "shadow.jsonl"
    vigil("replay", events, "--alerts", str(alone_a))
    vigil("replay", events, "--alerts", str(alone_b), "-c", _config(tmp_path, other))
    out = vigil(
        "replay", events, "--alerts", str(champ),
        "--shadow-model", str(other), "--shadow-alerts", str(shadow),
    )  # fmt: skip
    assert alone_a.read_bytes() != alone_b.read_bytes()  # the two models differ here
    assert champ.read_bytes() == alone_a.read_bytes()  # the champion is untouched
    # The shadow is the challenger alone; only the config version differs, since a config
    # naming B as its model is another config.
    assert _without_config_version(shadow) == _without_config_version(alone_b)
    b_version = orjson.loads((other / "classifier.card.json").read_bytes())["version"]
    n_b = len(alone_b.read_bytes().splitlines())
    assert f"shadow {b_version}: {n_b} alerts (not stored, not sent)" in out
    accounts = lambda p: {orjson.loads(x)["account_id"] for x in p.read_bytes().splitlines()}  # noqa: E731
    a, b = accounts(alone_a), accounts(alone_b)
    assert f"all {len(a & b)}/{len(a | b)}" in out


def test_shadow_alerts_never_reach_the_store(other: Path, tmp_path: Path) -> None:
    res = generate(tmp_path / "corpus", accounts=60, hours=3, seed=5, bad_rate=0.0)
    db = tmp_path / "vigil.db"
    champ, shadow = tmp_path / "champion.jsonl", tmp_path / "shadow.jsonl"
    out = vigil(
        "replay", str(res.events_path), "--store", str(db), "--alerts", str(champ),
        "--shadow-model", str(other), "--shadow-alerts", str(shadow),
    )  # fmt: skip
    mine = [orjson.loads(x) for x in champ.read_bytes().splitlines()]
    theirs = [orjson.loads(x) for x in shadow.read_bytes().splitlines()]
    assert mine and theirs
    st = open_store(str(db))
    with st.engine.connect() as conn:
        stored = conn.execute(select(alerts_table.c.alert_id, alerts_table.c.payload)).all()
        assert conn.execute(select(func.count()).select_from(alerts_table)).scalar() == len(mine)
    st.close()
    assert {r.alert_id for r in stored} == {a["alert_id"] for a in mine}
    versions = {orjson.loads(r.payload)["model_version"] for r in stored}
    assert versions == {orjson.loads((ARTIFACTS / "classifier.card.json").read_bytes())["version"]}
    assert {a["model_version"] for a in theirs} != versions
    # The console gets the two side by side, as a backtest without verdicts.
    assert "shadow agreement saved: /backtests/1" in out
    st = open_store(str(db))
    d = get_backtest(st, 1)["diff"]
    st.close()
    assert (d["champion"]["alerts"], d["challenger"]["alerts"]) == (len(mine), len(theirs))
    both = {a["account_id"] for a in mine} & {a["account_id"] for a in theirs}
    assert d["agreement"][-1]["both"] == len(both)


def test_a_bad_shadow_model_stops_the_run_before_it_starts(
    small_corpus, other: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    mixed = copy_model(tmp_path / "mixed")
    (mixed / "classifier.onnx").write_bytes((other / "classifier.onnx").read_bytes())
    alerts = tmp_path / "alerts.jsonl"
    for extra in (["--shadow-model", str(mixed)], ["--shadow-alerts", str(tmp_path / "s")]):
        r = CliRunner().invoke(
            build(), ["replay", str(small_corpus[0]), "--alerts", str(alerts), *extra]
        )
        assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1
        assert not alerts.exists()
    assert (
        "disagree"
        in CliRunner()
        .invoke(build(), ["replay", str(small_corpus[0]), "--shadow-model", str(mixed)])
        .output
    )


def test_a_shadow_that_fails_leaves_the_champion_as_it_was(small_corpus) -> None:  # type: ignore[no-untyped-def]
    from streams.core.config import VigilConfig
    from streams.engine.engine import Engine
    from streams.engine.shadow import build_shadow
    from streams.replay.reader import open_input, replay

    cfg = VigilConfig()
    broken = build_shadow(cfg, str(ARTIFACTS / "classifier.onnx"))
    broken.detector.features = [*broken.detector.features, "moon_phase"]  # no such column

    def run(shadow) -> tuple[list[bytes], int]:  # type: ignore[no-untyped-def]
        got: list[bytes] = []
        shadowed = [0]

        def sink(out) -> None:  # type: ignore[no-untyped-def]
            got.extend(a.to_json() for a in out.alerts)
            shadowed[0] += len(out.shadow_alerts)

        with open_input(str(small_corpus[0])) as fh:
            replay(Engine(cfg, shadow=shadow), fh, sink)
        return got, shadowed[0]

    plain, _ = run(None)
    with_broken, shadowed = run(broken)
    assert plain and with_broken == plain
    assert shadowed == 0 and broken.errors > 0
