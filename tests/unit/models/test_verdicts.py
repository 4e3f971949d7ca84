"""Reading the console's verdicts and placing them on the windows they judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.verdict_rows import Recorder, label_rows
from models.verdicts import VerdictError, counts, read_verdicts
from streams.fusion.fuse import alert_id

T = 1_793_000_000.0  # a window end, epoch seconds


def _line(**kw) -> bytes:
    row = {
        "alert_id": "a1",
        "account_id": "acct_1",
        "verdict": "misuse",
        "category": "key_leak",
        "window": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T00:05:00Z"},
        **kw,
    }
    return orjson.dumps({k: v for k, v in row.items() if v is not None}) + b"\n"


def test_jsonl_as_the_console_publishes_it(tmp_path: Path) -> None:
    p = tmp_path / "labels.jsonl"
    p.write_bytes(_line() + b"\n" + _line(alert_id="a2", verdict="false_positive", category=""))
    vs = read_verdicts([p])
    assert [v.verdict for v in vs] == ["misuse", "false_positive"]
    assert vs[0].window_end - vs[0].window_start == 300
    assert counts(vs) == {"false_positive": {"-": 1}, "misuse": {"key_leak": 1}}


def test_a_later_verdict_on_the_same_alert_wins(tmp_path: Path) -> None:
    p = tmp_path / "labels.jsonl"
    p.write_bytes(_line() + _line(verdict="false_positive"))
    (v,) = read_verdicts([p])
    assert v.verdict == "false_positive"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (_line(verdict="maybe"), "verdict 'maybe' is not one of"),
        (_line(window=None), "missing 'window'"),
        (_line(account_id=""), "missing or empty 'account_id'"),
        (_line(window={"start": "x", "end": "y"}), "is not RFC 3339"),
        (b"{not json\n", "not JSON"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: bytes, words: str) -> None:
    p = tmp_path / "labels.jsonl"
    p.write_bytes(_line() + line)
    with pytest.raises(VerdictError, match=words) as exc:
        read_verdicts([p])
    assert f"{p}:2" in str(exc.value)


def test_csv_export_without_window_and_with_escaped_cells(tmp_path: Path) -> None:
    p = tmp_path / "vigil-labels.csv"
    p.write_text(
        "id,alert_id,account_id,verdict,category,note,analyst,created_at\n"
        "1,a1,'-odd-account,misuse,key_leak,'=cmd,ana,2026-10-01\n"
    )
    (v,) = read_verdicts([p])
    assert v.account_id == "-odd-account" and v.window_end is None


def test_csv_that_is_not_a_labels_export(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(VerdictError, match="no column"):
        read_verdicts([p])


def _recorded(accounts: list[str], ends: list[float]) -> Recorder:
    rec = Recorder(["requests"])
    n = len(accounts)
    rec.accounts.append(np.array(accounts, dtype=object))
    rec.starts.append(np.array(ends) - 300)
    rec.ends.append(np.array(ends))
    rec.inputs.append(np.arange(n * 7, dtype=np.float32).reshape(n, 7))
    return rec


def _v(path: Path, rows: list[dict]) -> list:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return read_verdicts([path])


def _w(end: float) -> dict:
    return {"start": end - 300, "end": end}


def test_a_verdict_covers_its_window_and_the_cooldown_after(tmp_path: Path) -> None:
    rec = _recorded(["a", "a", "a", "a", "b"], [T, T + 300, T + 3000, T + 3600, T])
    vs = _v(
        tmp_path / "v.jsonl",
        [
            {"alert_id": "x", "account_id": "a", "verdict": "false_positive", "window": _w(T)},
            {"alert_id": "y", "account_id": "b", "verdict": "needs_info", "window": _w(T)},
            {"alert_id": "z", "account_id": "c", "verdict": "misuse", "window": _w(T)},
        ],
    )
    rows = label_rows(rec, vs, cooldown_s=3600)
    # T, T+300 and T+3000 are in the hour after the alert; T+3600 and b's window are not.
    assert rows.label.tolist() == [0, 0, 0, -1, -1]
    assert rows.matched == 2 and rows.unmatched == ["z"]


def test_misuse_wins_over_a_false_positive_on_the_same_window(tmp_path: Path) -> None:
    rec = _recorded(["a", "a"], [T, T + 600])
    vs = _v(
        tmp_path / "v.jsonl",
        [
            {
                "alert_id": "x",
                "account_id": "a",
                "verdict": "misuse",
                "category": "key_leak",
                "window": _w(T + 600),
            },
            {"alert_id": "y", "account_id": "a", "verdict": "false_positive", "window": _w(T)},
        ],
    )
    rows = label_rows(rec, vs, cooldown_s=3600)
    assert rows.label.tolist() == [0, 1]
    assert rows.category.tolist() == ["", "key_leak"]


def test_csv_verdicts_are_placed_by_their_alert_id(tmp_path: Path) -> None:
    rec = _recorded(["a", "a"], [T, T + 7200])
    p = tmp_path / "l.csv"
    aid = alert_id("a", T + 7200, "distillation")
    p.write_text(f"id,alert_id,account_id,verdict,category\n1,{aid},a,misuse,distillation\n")
    rows = label_rows(rec, read_verdicts([p]), cooldown_s=3600)
    assert rows.label.tolist() == [-1, 1] and rows.matched == 1


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("train",), "--out is required"),
        (("train", "--out", "{tmp}/m", "--events", "{tmp}/e.jsonl"), "go together"),
        (
            ("train", "--out", "{tmp}/m", "--events", "{tmp}/e.jsonl", "--verdicts", "{tmp}/v"),
            "--verdicts",
        ),
        (
            ("train", "--out", "{tmp}/m", "--events", "{tmp}/e.jsonl", "--verdicts", "{tmp}/bad"),
            "is not one of",
        ),
    ],
)
def test_train_errors_are_one_line(tmp_path: Path, args: tuple, words: str) -> None:
    (tmp_path / "e.jsonl").write_bytes(b"")
    (tmp_path / "bad").write_bytes(_line(verdict="maybe"))
    r = _vigil(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "m" / "gate.onnx").exists()
