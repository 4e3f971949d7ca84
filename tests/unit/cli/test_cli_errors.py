"""Each way a new user can hold the command wrong gives one line that names the problem,
exit status 2, and no traceback; inputs are checked before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VIGIL = [sys.executable, "-m", "streams"]


def _vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VIGIL, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("replay", "{tmp}"), ("is a directory",)),
        (("replay", "-", "--alerts", "{tmp}"), ("--alerts", "is a directory")),
        (("replay", "-", "--dead-letters", "{tmp}"), ("--dead-letters", "is a directory")),
        (("replay", "-", "--state", "{tmp}"), ("--state", "is a directory")),
        (("replay", "-", "--store", "mysql://db/vigil"), ("--store", "unsupported store")),
        (("replay", "-", "--store", "{tmp}"), ("--store", "is a directory")),
        (("replay", "-", "--labels", "{tmp}/missing.json"), ("--labels", "does not exist")),
        (("replay", "-", "--metrics-port", "99999"), ("--metrics-port",)),
        (("console", "--store", "{tmp}/c.db", "--port", "99999"), ("--port",)),
        (("generate", "--out", "{tmp}/g", "--accounts", "10"), ("--accounts",)),
        (("generate", "--out", "{tmp}/g", "--accounts", "20"), ("--accounts",)),
        (("generate", "--out", "{file}"), ("--out", "is a file")),
        (("replay", "{file}", "--alerts", "{file}"), ("--alerts", "also an input")),
        (("replay", "{file}", "--dead-letters", "{file}"), ("--dead-letters", "also an input")),
        (("replay", "{file}", "--state", "{file}"), ("--state", "also an input")),
        (("warm", "--events", "{file}", "--out", "{file}"), ("--out", "also an input")),
        (("replay", "-", "--alerts", "/proc/vigil-x"), ("--alerts", "cannot be written")),
        (("replay", "-", "-c", "{tmp}"), ("{tmp}", "is a directory")),
        (("replay", "-", "-c", "{binary}"), ("{binary}", "not UTF-8")),
        (("replay", "-", "-c", "{bogus}"), ("config: unknown key(s) bogus",)),
        (("replay", "-", "--labels", "{tmp}"), ("--labels", "is a directory")),
        (("replay", "-", "--labels", "{list}"), ("--labels", "expected a JSON object")),
        (("replay", "-", "--labels", "{file}.json"), ("--labels", "'end' is missing")),
        (("generate", "--out", "{tmp}/g", "--seed", "-1"), ("--seed",)),
        (("generate", "--out", "{tmp}/g", "--accounts", "99999999999999"), ("--accounts",)),
        (("console-user", "list", "--store", "{tmp}/u.db", "-c", "{binary}"), ("not UTF-8",)),
        (("models", "list", "--store", "{tmp}/m.db", "-c", "{binary}"), ("not UTF-8",)),
        (
            ("eval", "verdict-loop", "--events", "{file}", "--truth", "{list}", "--out", "{tmp}/v"),
            ("list.json: not a truth file", "expected a JSON object"),
        ),
        (
            ("eval", "cross-source", "--events", "{file}", "--truth", "{list}"),
            ("list.json: not a truth file", "expected a JSON object"),
        ),
        (
            ("eval", "verdict-loop", "--events", "{file}", "--truth", "{gen}", "--out", "{tmp}/v"),
            ("--hours 18 reaches the end of the labelled period (1 h)",),
        ),
        (("models", "list", "--store", "{tmp}/none.db"), ("--store", "no store at", "add")),
        (("models", "show", "champion", "--store", "{tmp}/none.db"), ("no store at",)),
        (
            ("control", "snooze", "--account", "a", "--detector", "nosuch", "--reason", "r")
            + ("--to-file", "{tmp}/s.jsonl", "--at", "0"),
            ("--detector nosuch: not a detector", "takeover"),
        ),
        (("eval", "scenarios", "--hours", "inf"), ("--hours",)),
        (("eval", "cross-source", "--accounts", "99999999999"), ("--accounts",)),
        (("train", "--hours", "1e9"), ("--hours",)),
        (
            ("eval", "nab-sweep", "--data", "{tmp}", "--labels", "{file}", "--factor", "-1"),
            ("--factor -1", "above 0"),
        ),
        (("replay",), ("PATH",)),
        (("no-such-command",), ("no-such-command",)),
    ],
)
def test_bad_arguments_give_one_line(tmp_path: Path, args: tuple[str, ...], words) -> None:
    f = tmp_path / "a-file"
    f.write_text("x")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    bogus = tmp_path / "bogus.toml"
    bogus.write_text("[bogus]\nx = 1\n")
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "a-file.json").write_text('{"accounts": {}, "start": 0}')
    names = {"tmp": tmp_path, "file": f, "binary": binary, "bogus": bogus}
    names["list"] = tmp_path / "list.json"
    names["gen"] = tmp_path / "gen.json"
    names["gen"].write_text('{"start": 0, "end": 3600, "accounts": {}}')
    r = _vigil(*(a.format(**names) for a in args))
    _one_line_error(r, *(w.format(**names) for w in words))
    assert f.read_text() == "x", "an input was written over"
    assert not (tmp_path / "none.db").exists(), "a store was made by a command that reads one"
    assert not (tmp_path / "s.jsonl").exists()


def test_an_environment_variable_that_is_not_text_is_named(tmp_path: Path) -> None:
    r = _vigil("replay", "-", env={"VIGIL_HASH_KEY": "\udcff\udcfe" + "k" * 20})
    _one_line_error(r, "VIGIL_HASH_KEY", "not UTF-8")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("models", "list", "--store", "{file}"), ("error: store:", "not a database")),
        (("console-user", "list", "--store", "{file}"), ("error: store:", "not a database")),
    ],
)
def test_a_store_that_is_no_database_stops_in_one_line(tmp_path: Path, args, words) -> None:
    f = tmp_path / "not-a-db"
    f.write_bytes(b"x" * 4096)
    r = _vigil(*(a.format(file=f) for a in args))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err


def test_labels_are_checked_before_the_input_is_read(tmp_path: Path) -> None:
    # A big input that would take a while: the missing labels file must stop it at once.
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_id":"e","ts":1,"account_id":"a","endpoint":"x"}\n' * 10)
    alerts = tmp_path / "alerts.jsonl"
    r = _vigil("replay", str(events), "--alerts", str(alerts), "--labels", str(tmp_path / "no"))
    _one_line_error(r, "--labels")
    assert not alerts.exists()  # nothing was processed


def test_a_model_that_cannot_load_stops_the_run_unless_asked(tmp_path: Path) -> None:
    env = {"VIGIL_MODEL_PATH": str(tmp_path / "missing.onnx")}
    alerts = tmp_path / "alerts.jsonl"
    r = _vigil("replay", "-", "--alerts", str(alerts), env=env)
    _one_line_error(r, "missing.onnx", "--without-classifier")
    assert not alerts.exists()
    r = _vigil("worker", env=env)
    _one_line_error(r, "missing.onnx")
    r = _vigil("replay", "-", "--without-classifier", env=env)
    assert r.returncode == 0, r.stderr


def test_version_and_plain_option_help() -> None:
    r = _vigil("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith("vigil ")
    r = subprocess.run(
        [*VIGIL, "replay", "--help"], capture_output=True, env={**os.environ, "COLUMNS": "120"}
    )
    out = r.stdout.decode()
    assert r.returncode == 0 and "--hold" in out
    assert "<bool>" not in out
    assert "--no-hold" not in out and "<str>" not in out and "<path>" not in out


def test_a_gzip_input_cut_short_is_replayed_up_to_the_cut_then_fails_in_one_line(
    tmp_path: Path,
) -> None:
    import gzip

    line = b'{"event_id":"e%d","ts":1767225600,"account_id":"acct-%d","endpoint":"chat"}'
    packed = gzip.compress(b"\n".join(line % (i, i % 50) for i in range(60_000)) + b"\n")
    cut = tmp_path / "events.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    dead = tmp_path / "dead.jsonl"
    r = _vigil("replay", str(cut), "--dead-letters", str(dead))
    _one_line_error(r, str(cut), "unreadable after", "lines before that point were processed")
    out = r.stdout.decode()
    read = int(out.split("read ", 1)[1].split(" lines", 1)[0].replace(",", ""))
    assert 20_000 < read < 60_000, out
    # The line the cut went through is dead-lettered: read = processed + rejected.
    assert dead.read_text().count("\n") == 1 and "malformed_json" in dead.read_text()
    # Commands that need the whole file stop in one line naming it, and write nothing.
    state = tmp_path / "warm.state"
    _one_line_error(_vigil("warm", "--events", str(cut), "--out", str(state)), str(cut))
    assert not state.exists()


@pytest.mark.parametrize(
    "args",
    [("console", "--store", "bogus://db"), ("console-user", "list", "--store", "bogus://db")],
)
def test_a_store_url_vigil_cannot_use_stops_the_console_in_one_line(args) -> None:
    _one_line_error(_vigil(*args), "--store", "unsupported store")


def test_a_group_without_its_command_prints_its_help_and_no_empty_error() -> None:
    r = _vigil("dashboards")
    assert r.returncode == 2 and "render" in r.stdout.decode()
    assert "error" not in r.stderr.decode() and "Traceback" not in r.stderr.decode()


def test_a_prompt_without_input_stops_in_one_line(tmp_path: Path) -> None:
    r = _vigil("console-user", "add", "bob", "--store", str(tmp_path / "c.db"))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert [x for x in err.splitlines() if x.startswith("error:")] == [
        "error: aborted: interrupted, or no input for a prompt"
    ], err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--store", "bogus://db"), ("--store", "unsupported store")),
        (("--role", "admin", "--store", "STORE"), ("role must be one of",)),
    ],
)
def test_console_user_add_checks_its_arguments_before_asking_for_the_password(
    tmp_path: Path, args: tuple, words: tuple
) -> None:
    # stdin is empty: had it prompted first, the command would end in "aborted".
    args = tuple(str(tmp_path / "c.db") if a == "STORE" else a for a in args)
    r = _vigil("console-user", "add", "bob", *args)
    _one_line_error(r, *words)
    assert "password" not in r.stdout.decode()


def test_a_broker_it_cannot_reach_stops_the_worker_in_one_line(tmp_path: Path) -> None:
    # Port 1 on this machine: nothing listens, so every bootstrap is refused. The worker
    # gives up after the Kafka client's bootstrap timeout (about 30 s); `vigil produce`,
    # `alerts tail` and `store-sink` end the same way, through the same handler.
    config = tmp_path / "vigil.toml"
    config.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:1"\n')
    r = _vigil("worker", "--config", str(config))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0], err
    assert "kafka.bootstrap_servers" in lines[0], err


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("value", ("a.csv", "not a CSV of timestamp and value")),
        ("binary_csv", ("b.csv", "not a CSV of timestamp and value")),
        ("param", ("threshold=abc", "must be a number")),
        ("labels", ("l.json", "not a windows file")),
        ("profiles", ("l.json", "profile standard has no CostMatrix")),
    ],
)
def test_eval_nab_names_the_input_it_cannot_read(tmp_path: Path, case: str, words) -> None:
    """Regression: each of these ended in a ValueError, TypeError or UnicodeDecodeError
    traceback."""
    data = tmp_path / "data" / "cat1"
    data.mkdir(parents=True)
    value = "abc" if case == "value" else "2"
    (data / "a.csv").write_text(
        f"timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,{value}\n"
    )
    if case == "binary_csv":
        (data / "b.csv").write_bytes(b"\xff\xfe\x00\x81" * 20)
    (tmp_path / "l.json").write_text("[1, 2]")
    (tmp_path / "w.json").write_text("{}")  # windows: none
    args = ["eval", "nab", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]
    args += {
        "param": ["-p", "threshold=abc"],
        "labels": ["--labels", str(tmp_path / "l.json")],
        "profiles": ["--profiles", str(tmp_path / "l.json"), "--labels", str(tmp_path / "w.json")],
    }.get(case, [])
    _one_line_error(_vigil(*args), *words)
