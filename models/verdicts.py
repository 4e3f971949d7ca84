"""Analysts' verdicts as the console publishes them, read for training.

Two forms (docs/console.md): the labels JSON Lines (one verdict per line, with its
alert's `window`) and the `/export/labels.csv` export, whose rows carry no window; a CSV
verdict is placed on its window by recomputing alert ids while the events are replayed
(`streams.fusion.fuse.alert_id` is a hash of account, window end and category).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

VERDICTS = ("misuse", "false_positive", "needs_info")


class VerdictError(ValueError):
    """A verdict file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Verdict:
    alert_id: str
    account_id: str
    verdict: str  # misuse | false_positive | needs_info
    category: str
    window_start: float | None  # epoch seconds; None for a CSV row (found by alert id)
    window_end: float | None


def _epoch(v: object, where: str) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise VerdictError(f"{where}: window time {v!r} is not RFC 3339")


def _unescape(cell: str) -> str:
    # The export prefixes a cell starting with =, +, -, @ with a quote (spreadsheet safety).
    return cell[1:] if cell[:2] in ("'=", "'+", "'-", "'@", "'\t", "'\r") else cell


def _check(obj: dict, where: str, need_window: bool) -> Verdict:
    for k in ("alert_id", "account_id", "verdict"):
        if not isinstance(obj.get(k), str) or not obj[k]:
            raise VerdictError(f"{where}: missing or empty {k!r}")
    if obj["verdict"] not in VERDICTS:
        raise VerdictError(
            f"{where}: verdict {obj['verdict']!r} is not one of {', '.join(VERDICTS)}"
        )
    start = end = None
    win = obj.get("window")
    if need_window or win is not None:
        if not isinstance(win, dict) or "start" not in win or "end" not in win:
            raise VerdictError(f"{where}: missing 'window' with 'start' and 'end'")
        start, end = _epoch(win["start"], where), _epoch(win["end"], where)
    cat = obj.get("category") or ""
    return Verdict(obj["alert_id"], obj["account_id"], obj["verdict"], str(cat), start, end)


def read_jsonl(path: Path) -> list[Verdict]:
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise VerdictError(f"{path}:{n}: not JSON") from None
        if not isinstance(obj, dict):
            raise VerdictError(f"{path}:{n}: not a JSON object")
        out.append(_check(obj, f"{path}:{n}", need_window=True))
    return out


def read_csv(path: Path) -> list[Verdict]:
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    rows = csv.DictReader(io.StringIO(text))
    missing = {"alert_id", "account_id", "verdict"} - set(rows.fieldnames or [])
    if missing:
        raise VerdictError(f"{path}: not a labels export, no column {sorted(missing)[0]!r}")
    out = []
    for n, row in enumerate(rows, 2):
        obj: dict[str, object] = {k: _unescape(v or "") for k, v in row.items() if k}
        if obj.get("window_start") and obj.get("window_end"):  # a export that has them
            obj["window"] = {"start": obj["window_start"], "end": obj["window_end"]}
        out.append(_check(obj, f"{path}:{n}", need_window=False))
    return out


def read_verdicts(paths: list[Path]) -> list[Verdict]:
    """Every verdict of every file; a later verdict on the same alert replaces an earlier
    one (an analyst who changed their mind)."""
    latest: dict[str, Verdict] = {}
    for p in paths:
        if not p.is_file():
            raise VerdictError(f"--verdicts {p} does not exist")
        rows = read_csv(p) if p.suffix.lower() == ".csv" else read_jsonl(p)
        for v in rows:
            latest.pop(v.alert_id, None)
            latest[v.alert_id] = v
    if not latest:
        raise VerdictError("the verdict files hold no verdict")
    return list(latest.values())


def counts(verdicts: list[Verdict]) -> dict[str, dict[str, int]]:
    """Verdict counts per verdict and category, for the model card."""
    c: dict[str, Counter] = {}
    for v in verdicts:
        c.setdefault(v.verdict, Counter())[v.category or "-"] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(c.items())}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
