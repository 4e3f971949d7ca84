"""`vigil control` refuses what a worker would refuse, in one line, before publishing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.unit.cli.test_cli_errors import _one_line_error, _vigil
from tests.unit.runtime.test_control import copy_model


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("promote", "--model", "{tmp}/nowhere"), ("does not exist",)),
        (("promote", "--model", "{tmp}/width"), ("ONNX input width",)),
        (("config", "{tmp}/engine.toml"), ("restart", "engine")),
        (("config", "{tmp}/bad.toml"), ("fusion.alert_threshold",)),
        (("config", "{tmp}/none.toml"), ("does not exist",)),
        (("snooze", "--account", "a", "--detector", "rules"), ("--reason",)),
        (("promote", "--model", "{tmp}/good", "--to-file", "{tmp}/c.jsonl"), ("--at",)),
    ],
)
def test_control_errors_are_one_line(tmp_path: Path, args: tuple, words: tuple) -> None:
    copy_model(tmp_path / "width", "clf-w", drop_feature=True)
    copy_model(tmp_path / "good", "clf-good")
    (tmp_path / "engine.toml").write_text("[engine]\nwindow_s = 60\n")
    (tmp_path / "bad.toml").write_text('[fusion]\nalert_threshold = "high"\n')
    _one_line_error(_vigil("control", *(a.format(tmp=tmp_path) for a in args)), *words)


def test_records_to_file_carry_their_event_time(tmp_path: Path) -> None:
    out = tmp_path / "control.jsonl"
    (tmp_path / "fusion.toml").write_text("[fusion]\nalert_threshold = 0.7\n")
    r = _vigil("control", "config", str(tmp_path / "fusion.toml"), "--to-file", str(out),
               "--at", "2026-10-01T01:00:00Z")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    (rec,) = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert rec["kind"] == "config" and rec["config"] == {"fusion": {"alert_threshold": 0.7}}
    assert rec["at"] == 1_790_816_400.0
