"""bench/kafka_trace.py: lag, rates, stalls and paused seconds read from a progress trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.bench.scripts import BENCH, load_script


def _tool():
    return load_script(BENCH / "kafka_trace.py", "kafka_trace_check")


def _write(path: Path, rows: list[tuple[float, float, float, float]]) -> Path:
    lines = ["seconds,consumed,processed,paused_partitions"]
    lines += [f"{t},{c},{d},{p}" for t, c, d, p in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trace_gives_its_lag_rates_stalls_and_paused_share(tmp_path):
    tool = _tool()
    # 1,000 events: taken in at 100 /s from t = 1; scored 2 s behind, except that scoring
    # stands still from t = 5 to t = 8 and then catches up; partitions paused in 2 of 5 s.
    rows = []
    for i in range(0, 121):
        t = i / 10
        consumed = min(1000.0, max(0.0, (t - 1) * 100))
        behind = max(0.0, (t - 3) * 100)
        scored = min(1000.0, behind if not 5 <= t <= 8 else 200.0)
        rows.append((t, consumed, scored, 3.0 if int(t) in (2, 4) else 0.0))
    s = tool.summarise(tool.read_trace(_write(tmp_path / "r0v0-x.csv", rows)), 1000)
    assert s.lags[0.1] == pytest.approx(2.0, abs=0.11)
    assert s.lags[0.6] == pytest.approx(2.0, abs=0.11)
    assert s.consumed_rate == pytest.approx(100, rel=0.05)
    assert len(s.stalls) == 1
    at, length = s.stalls[0]
    assert at == pytest.approx(4.0, abs=0.11) and length == pytest.approx(3.0, abs=0.11)
    assert 0 < s.paused_share < 1


def test_a_file_that_is_not_a_trace_is_named(tmp_path):
    tool = _tool()
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a bench_kafka.py trace"):
        tool.read_trace(bad)
    empty = _write(tmp_path / "e.csv", [(0.0, 0.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match="consumed nothing"):
        tool.summarise(tool.read_trace(empty), 10)
