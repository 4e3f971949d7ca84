"""bench_kafka.py's `--compare`: a worker's [worker] settings, checked before any broker
starts, as the worker itself would check them; `--compare-tree`: a checkout, checked so."""

from __future__ import annotations

import sys

import pytest

from streams.core.config_load import load_config
from tests.unit.bench.scripts import BENCH, load_script


def _bench():
    return load_script(BENCH / "bench_kafka.py", "bench_kafka_check")


def test_compared_settings_reach_the_workers_config(tmp_path):
    bench = _bench()
    path = bench.write_config(
        tmp_path / "w.toml",
        "localhost:9092",
        "p",
        "exactly_once",
        worker=("fetch_max_wait_ms = 100", "exchange_commit_s = 0.5"),
    )
    cfg = load_config(path)
    assert (cfg.worker.fetch_max_wait_ms, cfg.worker.exchange_commit_s) == (100, 0.5)
    plain = load_config(
        bench.write_config(tmp_path / "d.toml", "localhost:9092", "p", "exactly_once")
    )
    assert plain.worker.fetch_max_wait_ms != 100  # no [worker] table: the defaults


def _refused(monkeypatch, capsys, *argv: str) -> str:
    """The one line bench_kafka.py exits 2 with for `argv`, checked before any broker."""
    bench = _bench()
    started = []
    monkeypatch.setattr(bench, "start_broker", lambda scratch: started.append(scratch))
    monkeypatch.setattr(sys, "argv", ["bench_kafka.py", *argv])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and started == []
    return err[-1]


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("fetch_max_wait_ms", "expected KEY=VALUE"),
        ("bogus=1", "unknown key(s) bogus"),
        ("fetch_max_wait_ms='a'", "expected int"),
        ("fetch_max_wait_ms=abc", "not valid TOML"),
    ],
)
def test_a_bad_compared_setting_is_one_line_before_any_broker(monkeypatch, capsys, setting, says):
    assert says in _refused(monkeypatch, capsys, "--compare", setting)


def test_a_compared_tree_that_is_no_checkout_is_one_line_before_any_broker(
    monkeypatch, capsys, tmp_path
):
    line = _refused(monkeypatch, capsys, "--compare-tree", str(tmp_path))
    assert "no Vigil checkout there" in line
