"""Engine.swap: another model and config between two batches, every piece of state kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.core.config import VigilConfig
from streams.engine.engine import Engine, build_detectors
from streams.runtime.control import ControlState, model_record
from tests.events_util import T0, line
from tests.unit.runtime.test_control import copy_model


def farming(window: int) -> list[bytes]:
    """A free-plan account past its token quota (the rules detector fires) in `window`,
    a new account each window so that no cooldown hides the next alert, and a benign one."""
    t, acct = T0 + window * 300, f"acct_free_{window}"
    burst = [
        line(account_id=acct, ts=t + 10 + i, plan="free", prompt_tokens=80_000, api_key_id=acct)
        for i in range(4)
    ]
    return [*burst, line(account_id="acct_benign", ts=t + 5)]


def test_swap_between_batches_versions_alerts_and_keeps_state(tmp_path: Path) -> None:
    cfg = VigilConfig()
    engine = Engine(cfg, detectors=build_detectors(cfg))
    state = ControlState(cfg)
    before = [a for w in range(3) for a in engine.process_lines(farming(w)).alerts]
    assert [a.window["start"] for a in before] and all(
        a.model_version == engine.model_version and a.config_version == engine.config_version
        for a in before
    )
    old_model, old_cfg = engine.model_version, engine.config_version
    kept = (len(engine.table), engine.closed_until, engine.max_ts, len(engine.pending))

    new = state.apply(model_record(str(copy_model(tmp_path / "m2", "clf-test-2"))))
    new = state.apply({"kind": "config", "config": {"fusion": {"cooldown_s": 0}}})
    engine.swap(new.config, new.classifier)
    assert (len(engine.table), engine.closed_until, engine.max_ts, len(engine.pending)) == kept
    assert engine.detectors["classifier"] is new.classifier
    assert list(engine.detectors) == list(build_detectors(cfg))  # same order, same names
    info = engine.metrics.registry.get_sample_value(
        "vigil_config_info", {"config_version": new.config_version}
    )
    assert info == 1.0  # the dashboards' version annotation moves

    after = [a for w in range(3, 6) for a in engine.process_lines(farming(w)).alerts]
    after += engine.flush().alerts
    assert len(after) >= 3
    # The window left open at the swap is scored by the new model: it closed after it.
    assert {(a.model_version, a.config_version) for a in after} == {
        ("clf-test-2", new.config_version)
    }
    assert old_model != "clf-test-2" and new.config_version != old_cfg


def test_swap_refuses_settings_that_state_depends_on() -> None:
    cfg = VigilConfig()
    engine = Engine(cfg, detectors=build_detectors(cfg, classifier=False))
    other = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, window_s=60))
    with pytest.raises(ValueError, match="engine settings"):
        engine.swap(other)
    assert engine.cfg is cfg
    with pytest.raises(ValueError, match="without a classifier"):
        engine.swap(cfg, classifier=object())
