"""The registry's file side: content addresses and the checks a model must pass."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.registry import content_hash, intact, store_files
from models.train import ARTIFACTS
from models.verify import ModelRejected, check_model
from streams.features.window import FEATURES
from tests.model_util import copy_model, fewer_trees


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fewer_trees(tmp_path_factory.mktemp("b") / "model")


def test_the_version_is_the_hash_of_the_files(tmp_path: Path, other: Path) -> None:
    a = copy_model(tmp_path / "a")
    v = content_hash(a)
    assert v == content_hash(ARTIFACTS) == content_hash(a / "classifier.onnx")
    assert v.startswith("m-") and len(v) == 14
    assert content_hash(other) != v
    card = a / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\n")
    assert content_hash(a) != v  # any byte of any file changes it


def test_stored_once_and_checked_for_change(tmp_path: Path) -> None:
    first = store_files(ARTIFACTS, tmp_path / "reg")
    again = store_files(ARTIFACTS, tmp_path / "reg")
    assert first.new and not again.new and first.path == again.path
    assert first.path.name == first.version
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == [first.version]
    assert intact(first.path, first.version) is None
    (first.path / "classifier.onnx").write_bytes(
        b"\0" + (first.path / "classifier.onnx").read_bytes()
    )
    assert "changed since registration" in intact(first.path, first.version)


def test_the_shipped_model_and_a_retrained_one_pass(other: Path) -> None:
    shipped = check_model(ARTIFACTS, tuple(FEATURES))
    assert shipped.features == len(FEATURES) and shipped.parity < 1e-4 and shipped.rows >= 256
    assert check_model(other).version != shipped.version


def _rejected(path: Path, *words: str) -> None:
    with pytest.raises(ModelRejected) as e:
        check_model(path, tuple(FEATURES))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg


def test_bad_models_are_refused_with_one_line(tmp_path: Path, other: Path) -> None:
    missing = copy_model(tmp_path / "missing")
    (missing / "classifier.onnx").unlink()
    _rejected(missing, "missing classifier.onnx")

    mixed = copy_model(tmp_path / "mixed")  # an ONNX file that is not its pickle's export
    (mixed / "classifier.onnx").write_bytes((other / "classifier.onnx").read_bytes())
    _rejected(mixed, "disagree")

    narrow = copy_model(tmp_path / "narrow")  # the card lists one feature fewer
    card = orjson.loads((narrow / "classifier.card.json").read_bytes())
    card["features"] = card["features"][:-1]
    (narrow / "classifier.card.json").write_bytes(orjson.dumps(card))
    _rejected(narrow, "input width 45", "44 features")

    alien = copy_model(tmp_path / "alien")  # a feature the engine does not compute
    card = orjson.loads((alien / "classifier.card.json").read_bytes())
    card["features"][0] = "moon_phase"
    (alien / "classifier.card.json").write_bytes(orjson.dumps(card))
    _rejected(alien, "moon_phase")

    broken = copy_model(tmp_path / "broken")
    (broken / "classifier.onnx").write_bytes(b"not a model")
    _rejected(broken, "cannot be loaded")
