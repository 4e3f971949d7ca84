"""`vigil warm`, `vigil replay --reset` and `vigil calibrate` from the command line: one-line
errors before any work, and a calibrated config that loads as a new config version."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streams.core.config_load import load_config
from streams.core.config_version import config_version

VIGIL = [sys.executable, "-m", "streams"]


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VIGIL, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=300,
        env=dict(os.environ),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("warm", "--events", "{tmp}/none.jsonl", "--out", "{tmp}/s"), ("does not exist",)),
        (("warm", "--events", "{ev}", "--out", "{tmp}/s", "--only", "population"),
         ("--only and --into",)),
        (("warm", "--events", "{ev}", "--out", "{tmp}/s", "--only", "nope", "--into", "{ev}"),
         ("--only nope", "not a detector")),
        (("replay", "{ev}", "--reset", "population"), ("--reset needs --state",)),
        (("calibrate", "--events", "{ev}", "--budget", "1", "--out", "{tmp}/c.toml",
          "--labels", "{tmp}/none.json"), ("--labels", "does not exist")),
        (("calibrate", "--events", "{ev}", "--budget", "1", "--out", "{tmp}/c.toml",
          "--verdicts", "{bad}"), ("unknown verdict",)),
        (("calibrate", "--events", "{ev}", "--budget", "1", "--out", "{tmp}/c.toml",
          "--config", "{cfg}"), ("fusion.thresholds.leak: not a category",)),
    ],
)  # fmt: skip
def test_bad_arguments_give_one_line(tmp_path: Path, args, words) -> None:
    ev = tmp_path / "ev.jsonl"
    ev.write_text("")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"account_id": "a", "verdict": "maybe"}\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fusion.thresholds]\nleak = 0.7\n")
    subs = {"{tmp}": str(tmp_path), "{ev}": str(ev), "{bad}": str(bad), "{cfg}": str(cfg)}
    argv = [a for a in args]
    for k, v in subs.items():
        argv = [a.replace(k, v) for a in argv]
    r = _vigil(*argv)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert all(w in lines[0] for w in words), err


def test_calibrate_writes_a_config_that_loads_with_its_thresholds(small_corpus, tmp_path) -> None:
    events, labels = small_corpus
    out = tmp_path / "cal" / "vigil.toml"
    base = tmp_path / "base.toml"
    base.write_text("[fusion]\ncooldown_s = 1800\n")
    r = _vigil(
        "calibrate", "--events", str(events), "--labels", str(labels), "--budget", "0",
        "--out", str(out), "--config", str(base), "--without-classifier",
    )  # fmt: skip
    text = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert "verified by a replay" in text and "budget 0" in text
    cfg = load_config(out)
    assert cfg.fusion.cooldown_s == 1800  # the base config is kept
    assert set(cfg.fusion.thresholds) and all(0 < t <= 1 for t in cfg.fusion.thresholds.values())
    assert config_version(cfg) in text
    assert tomllib.loads(out.read_text())["fusion"]["thresholds"] == cfg.fusion.thresholds
    # The figures the recording predicted are the ones the replay measured.
    chosen = [x for x in text.splitlines() if x.startswith("chosen thresholds")]
    assert len(chosen) == 2 and chosen[0].split(": ", 1)[1] == chosen[1].split(": ", 1)[1]


def _state_files(tmp: Path) -> dict[str, Path]:
    """A foreign file, a state cut short, a checkpoint of something else, and the plain
    pickle that replay and warm wrote before the checkpoint codec."""
    import pickle

    from streams.engine.engine import Engine, build_detectors
    from streams.runtime.checkpoint_codec import encode_state

    cfg = load_config(None)
    state = Engine(cfg, detectors=build_detectors(cfg, classifier=False)).state_dict()
    files = {
        "foreign": b"%PDF-1.7 not a state",
        "cut": encode_state(state)[:100],
        "journal": encode_state([b'{"event_id": "e1"}']),
        "old": pickle.dumps(state, protocol=5),
    }
    for name, blob in files.items():
        (tmp / name).write_bytes(blob)
    return {name: tmp / name for name in files}


@pytest.mark.parametrize(
    ("command", "name", "words"),
    [
        ("replay", "foreign", ("not a Vigil checkpoint",)),
        ("replay", "cut", ("truncated: 100 bytes",)),
        ("replay", "journal", ("not an engine state",)),
        ("warm", "foreign", ("not a Vigil checkpoint",)),
        ("warm", "cut", ("truncated",)),
    ],
)
def test_a_bad_state_file_gives_one_line_naming_it(tmp_path: Path, command, name, words) -> None:
    ev = tmp_path / "ev.jsonl"
    ev.write_text("")
    path = _state_files(tmp_path)[name]
    before = path.read_bytes()
    if command == "replay":
        r = _vigil("replay", str(ev), "--state", str(path), "--without-classifier")
    else:
        r = _vigil("warm", "--events", str(ev), "--out", str(tmp_path / "new"),
                   "--only", "population", "--into", str(path), "--without-classifier")  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), err
    assert all(w in lines[0] for w in words), err
    assert path.read_bytes() == before  # the operator's file is left as it was


def test_replay_resumes_an_old_pickle_state_and_saves_it_in_the_codec(tmp_path: Path) -> None:
    ev = tmp_path / "ev.jsonl"
    ev.write_text("")
    path = _state_files(tmp_path)["old"]
    r = _vigil("replay", str(ev), "--state", str(path), "--without-classifier")
    assert r.returncode == 0, r.stderr.decode()
    assert f"resumed engine state from {path}" in r.stderr.decode()
    assert path.read_bytes()[:4] == b"VGS3"  # the current format version
    r = _vigil("replay", str(ev), "--state", str(path), "--without-classifier")
    assert r.returncode == 0 and "resumed engine state" in r.stderr.decode(), r.stderr.decode()
