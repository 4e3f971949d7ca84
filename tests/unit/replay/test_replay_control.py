"""`vigil replay --control FILE`: promotions and snoozes applied at their event time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.replay.control import parse_at
from streams.runtime.control import ControlError
from tests.events_util import T0
from tests.unit.engine.test_engine_swap import farming
from tests.unit.runtime.test_control import copy_model

VIGIL = [sys.executable, "-m", "streams"]


def _vigil(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*VIGIL, *map(str, args)], capture_output=True, timeout=180)


def test_replay_applies_control_records_at_event_time(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(x for w in range(6) for x in farming(w)) + b"\n")
    model = copy_model(tmp_path / "m2", "clf-test-2")
    control = tmp_path / "control.jsonl"
    r = _vigil("control", "promote", "--model", model, "--to-file", control, "--at", T0 + 900)
    assert r.returncode == 0, r.stderr.decode()
    r = _vigil(
        "control", "snooze", "--account", "acct_free_4", "--detector", "rules",
        "--reason", "known load test", "--to-file", control, "--at", "2026-10-01T00:20:00Z",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "alerts.jsonl"
    r = _vigil("replay", events, "--control", control, "--alerts", out)
    assert r.returncode == 0, r.stderr.decode()
    alerts = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    by_account = {a["account_id"]: a for a in alerts}
    # Windows 0-2 start before the promotion's time, 3 and 5 after it; 4 is snoozed.
    assert set(by_account) == {f"acct_free_{w}" for w in (0, 1, 2, 3, 5)}
    old = {by_account[f"acct_free_{w}"]["model_version"] for w in (0, 1, 2)}
    assert len(old) == 1 and old != {"clf-test-2"}
    assert {by_account[f"acct_free_{w}"]["model_version"] for w in (3, 5)} == {"clf-test-2"}
    cfg_versions = {a["config_version"] for a in alerts}
    assert len(cfg_versions) == 2 and "" not in cfg_versions  # the model path is in it


def test_a_bad_control_file_stops_replay_with_one_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(farming(0)) + b"\n")
    control = tmp_path / "control.jsonl"
    bad = {"kind": "model", "model_path": str(tmp_path / "nowhere"), "at": T0}
    control.write_bytes(orjson.dumps({"kind": "config", "config": {}, "at": T0}) + b"\n")
    control.write_bytes(control.read_bytes() + orjson.dumps(bad) + b"\n")
    r = _vigil("replay", events, "--control", control)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and "line 2" in err and "does not exist" in err, err


@pytest.mark.parametrize("value", ["nan", "inf", float("nan"), "yesterday", True])
def test_an_at_that_is_no_finite_time_is_refused(value) -> None:
    """Regression: `--at nan` read as a float and was written out as "at": null."""
    with pytest.raises(ControlError, match="`at` must be"):
        parse_at(value)
    assert parse_at("2026-10-01T00:00:00Z") == parse_at(1_790_812_800) == 1_790_812_800.0
