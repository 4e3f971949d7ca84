"""Control records: what a runner switches to, and what it refuses while keeping the old."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from detectors.classifier import DEFAULT_MODEL
from streams.core.config import VigilConfig
from streams.runtime.control import (
    ControlError,
    ControlState,
    model_record,
    snooze_record,
)


def copy_model(dest: Path, version: str, drop_feature: bool = False) -> Path:
    """The shipped model under another version; `drop_feature`: its card lists one
    feature fewer than the ONNX graph takes (a wrong input width)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEFAULT_MODEL, dest / "classifier.onnx")
    shutil.copy(DEFAULT_MODEL.with_suffix(".skl.pkl"), dest / "classifier.skl.pkl")
    card = orjson.loads(DEFAULT_MODEL.with_suffix(".card.json").read_bytes())
    card["version"] = version
    if drop_feature:
        card["features"] = card["features"][:-1]
    (dest / "classifier.card.json").write_bytes(orjson.dumps(card))
    return dest


def test_promotion_switches_model_and_config_version(tmp_path: Path) -> None:
    state = ControlState(VigilConfig())
    before = state.current
    new = state.apply(model_record(str(copy_model(tmp_path / "m2", "clf-test-2"))))
    assert new.model_version == new.classifier.version == "clf-test-2"
    assert new.generation == before.generation + 1
    assert new.config.model_path.endswith("m2/classifier.onnx")
    assert new.config_version != before.config_version  # the model path is in it
    assert state.current is new


@pytest.mark.parametrize("kind", ["missing", "corrupt", "width", "version"])
def test_a_bad_model_is_refused_and_the_running_one_stays(tmp_path: Path, kind: str) -> None:
    state = ControlState(VigilConfig())
    good = state.apply(model_record(str(copy_model(tmp_path / "good", "clf-good"))))
    bad = copy_model(tmp_path / "bad", "clf-bad", drop_feature=kind == "width")
    record = {"kind": "model", "model_path": str(bad), "version": "clf-bad"}
    if kind == "missing":
        (bad / "classifier.onnx").unlink()
    elif kind == "corrupt":
        (bad / "classifier.onnx").write_bytes(b"not an onnx graph")
    elif kind == "version":
        record["version"] = "clf-something-else"
    with pytest.raises(ControlError) as err:
        state.apply(record)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert state.current is good  # nothing half-applied


def test_config_record_switches_fusion_and_rules_only(tmp_path: Path) -> None:
    state = ControlState(VigilConfig())
    v0 = state.current.config_version
    new = state.apply(
        {"kind": "config", "config": {"fusion": {"alert_threshold": 0.7}, "rules": []}}
    )
    assert new.config.fusion.alert_threshold == 0.7 and new.config.rules == ()
    assert new.config.fusion.cooldown_s == VigilConfig().fusion.cooldown_s
    assert new.config_version != v0
    kept = state.current
    for bad, words in [
        ({"engine": {"window_s": 60}}, "restart"),
        ({"fusion": {"alert_threshold": "high"}}, "fusion.alert_threshold"),
        ({"fusion": {"no_such": 1}}, "no_such"),
    ]:
        with pytest.raises(ControlError, match=words):
            state.apply({"kind": "config", "config": bad})
        assert state.current is kept
    with pytest.raises(ControlError, match="kind"):
        state.apply({"kind": "reboot"})


def test_snoozes_as_the_console_publishes_them() -> None:
    state = ControlState(VigilConfig())
    key, value = snooze_record("acct_1", "rules", 2_000_000_000.0, "known batch job")
    assert key == b"acct_1\x1frules"
    state.snooze(key, value)
    assert state.snoozed(1_900_000_000.0) == {("acct_1", "rules"): 2_000_000_000.0}
    # A lift is a new value for the key with an until already past.
    state.snooze(*snooze_record("acct_1", "rules", 1_800_000_000.0, "lifted by ana"))
    assert state.snoozed(1_900_000_000.0)[("acct_1", "rules")] == 1_800_000_000.0
    state.snooze(key, None)  # a tombstone forgets it
    assert state.snoozed(0.0) == {}
    with pytest.raises(ControlError, match="unreadable"):
        state.snooze(key, b'{"account_id": "acct_1"}')


def test_a_stricter_check_from_above_refuses_too(tmp_path: Path) -> None:
    def strict(path: str) -> None:
        raise RuntimeError("ONNX and scikit-learn disagree by 0.3\non 64 rows")

    state = ControlState(VigilConfig(), check=strict)
    before = state.current
    with pytest.raises(ControlError, match="refused: ONNX and scikit-learn disagree by 0.3 on"):
        state.apply(model_record(str(copy_model(tmp_path / "m", "clf-m"))))
    assert state.current is before
