"""A model that is not what its card says is refused with one line, before any event is
read: a missing file, an input width other than the card's, an ONNX export that disagrees
with its scikit-learn original on a sample. The CLI stops with exit 2 and no traceback."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from detectors.classifier import DEFAULT_MODEL, ClassifierDetector
from detectors.model_checks import ModelRefused


def _copy(tmp: Path) -> Path:
    d = tmp / "model"
    d.mkdir()
    for suffix in (".onnx", ".card.json", ".skl.pkl"):
        shutil.copyfile(DEFAULT_MODEL.with_suffix(suffix), d / f"classifier{suffix}")
    return d


def _replay(model: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams", "replay", "-", "--model", str(model)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def _refused_in_one_line(model: Path, *words: str) -> None:
    r = _replay(model)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], err


def test_a_good_copy_loads(tmp_path: Path) -> None:
    clf = ClassifierDetector(str(_copy(tmp_path)))
    assert clf.version == ClassifierDetector().version
    assert clf.gate is None


@pytest.mark.parametrize("name", ["classifier.onnx", "classifier.card.json", "classifier.skl.pkl"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    d = _copy(tmp_path)
    (d / name).unlink()
    with pytest.raises(ModelRefused, match="does not exist"):
        ClassifierDetector(str(d))


def test_missing_file_from_the_cli(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "classifier.skl.pkl").unlink()
    _refused_in_one_line(d, "classifier.skl.pkl", "does not exist")
    _refused_in_one_line(tmp_path / "nowhere", "--model", "does not exist")


def _narrow(d: Path) -> None:
    card = orjson.loads((d / "classifier.card.json").read_bytes())
    card["features"] = card["features"][:-1]
    (d / "classifier.card.json").write_bytes(orjson.dumps(card))


def test_wrong_input_width(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _narrow(d)
    with pytest.raises(ModelRefused, match="inputs per row"):
        ClassifierDetector(str(d))
    _refused_in_one_line(d, "inputs per row")


def _foreign_original(d: Path) -> None:
    """Another scikit-learn model with the same classes and width: parity must fail."""
    from sklearn.ensemble import GradientBoostingClassifier

    real = pickle.loads((d / "classifier.skl.pkl").read_bytes())
    rng = np.random.default_rng(3)
    X = rng.random((len(real.classes_) * 20, real.n_features_in_)).astype(np.float32)
    y = np.repeat(real.classes_, 20)
    other = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y)
    (d / "classifier.skl.pkl").write_bytes(pickle.dumps(other))


def test_parity_failure(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _foreign_original(d)
    with pytest.raises(ModelRefused, match="disagree"):
        ClassifierDetector(str(d))
    _refused_in_one_line(d, "ONNX and scikit-learn disagree")


def test_unreadable_onnx(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "classifier.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelRefused, match="not a readable ONNX model"):
        ClassifierDetector(str(d))


def test_gate_without_its_card_is_refused(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "gate.onnx").write_bytes((d / "classifier.onnx").read_bytes())
    with pytest.raises(ModelRefused, match="gate.card.json does not exist"):
        ClassifierDetector(str(d))


@pytest.mark.parametrize(
    ("card", "words"),
    [
        (b"[1, 2]", ("classifier.card.json", "not a JSON object")),
        (b"{nope", ("classifier.card.json", "not JSON")),
        (None, ("classifier.card.json", "no 'reference'")),
    ],
)
def test_a_card_that_is_not_a_model_card_is_named(tmp_path: Path, card, words) -> None:
    d = _copy(tmp_path)
    path = d / "classifier.card.json"
    if card is None:  # a card missing one of its tables
        body = orjson.loads(path.read_bytes())
        del body["reference"]
        card = orjson.dumps(body)
    path.write_bytes(card)
    _refused_in_one_line(d, *words)
