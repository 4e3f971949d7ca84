"""Paced replay (`--speed`, `--rate`), the event-to-alert latency clock and the config
version: their arithmetic on a fake clock, and the command's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from streams.core.config import VigilConfig
from streams.core.config_load import load_config
from streams.core.config_version import config_version
from streams.engine.alert_latency import ALERT_LATENCY_BUCKETS, AlertLatency
from streams.replay.pacing import Pacer, PacingError

VIGIL = str(Path(sys.executable).with_name("vigil"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_paces_lines_per_second() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=100, sleep=clock.sleep, clock=clock)
    assert pacer.batch_lines == 5  # 20 batches a second
    for _ in range(20):
        pacer.after_batch(5, float("nan"))
    assert clock.now - 1000.0 == pytest.approx(1.0)  # 100 lines took one second


def test_speed_paces_event_time() -> None:
    clock = FakeClock()
    pacer = Pacer(speed=60, sleep=clock.sleep, clock=clock)
    pacer.after_batch(256, 7200.0)  # the first event time sets the origin
    pacer.after_batch(256, 7200.0 + 600)  # ten minutes of event time ...
    assert clock.now - 1000.0 == pytest.approx(10.0)  # ... in ten seconds at 60x
    clock.now += 30  # a slow batch: no sleep, the pacer does not try to catch up backwards
    pacer.after_batch(256, 7200.0 + 660)
    assert clock.slept == [pytest.approx(10.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 0.0}, "--speed must be a positive number, got 0"),
        ({"rate": -5.0}, "--rate must be a positive number, got -5"),
        ({"rate": float("inf")}, "--rate must be a positive number, got inf"),
        ({"speed": 2.0, "rate": 3.0}, "give --speed or --rate, not both"),
    ],
)
def test_bad_pacing_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(PacingError, match=message):
        Pacer(**kwargs)


def test_replay_command_gives_one_line_errors(tmp_path: Path) -> None:
    events = tmp_path / "none.jsonl"
    events.write_text("")
    for args, message in (
        (["--speed", "0"], "error: --speed must be a positive number, got 0"),
        (["--speed", "2", "--rate", "3"], "error: give --speed or --rate, not both"),
    ):
        proc = subprocess.run(
            [VIGIL, "replay", str(events), *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2
        assert proc.stderr.strip() == message, proc.stderr


def test_paced_replay_takes_the_time_it_should(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        f'{{"event_id":"e{i}","ts":{1790812800 + i},"account_id":"a","endpoint":"x"}}'
        for i in range(40)
    ]
    events.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [VIGIL, "replay", str(events), "--rate", "20"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    seconds = float(proc.stdout.split(" lines in ")[1].split(" s")[0])
    assert 1.8 <= seconds < 4.0  # 40 events at 20/s: two seconds, not instantly


def histogram() -> Histogram:
    return Histogram("t_seconds", "t", buckets=ALERT_LATENCY_BUCKETS, registry=CollectorRegistry())


def observed(h: Histogram) -> tuple[float, float]:
    samples = {s.name: s.value for s in h.collect()[0].samples if not s.labels.get("le")}
    return samples["t_seconds_count"], samples["t_seconds_sum"]


def test_alert_latency_runs_from_the_batch_that_reached_the_window_end() -> None:
    clock = FakeClock()
    h = histogram()
    lat = AlertLatency(h, clock=clock)
    lat.batch_arrived(float("-inf"), 250.0, arrived=1000.0)  # newest event 250 s
    lat.batch_arrived(250.0, 310.0, arrived=1010.0)  # reaches the window end 300 s
    lat.batch_arrived(310.0, 365.0, arrived=1070.0)  # watermark passes 300: the window closes
    clock.now = 1071.0
    lat.alerts_emitted([300.0, 300.0], closed_until=300.0)
    assert observed(h) == (2.0, pytest.approx(122.0))  # 61 s each, from 1010
    lat.alerts_emitted([900.0], closed_until=300.0)  # never reached (a final flush): skipped
    assert observed(h)[0] == 2.0


def test_config_version_is_stable_and_follows_detection_settings(tmp_path: Path) -> None:
    base = config_version(VigilConfig())
    assert base == config_version(VigilConfig()) and base.startswith("cfg-")
    other = tmp_path / "other.toml"
    other.write_text("[fusion]\nalert_threshold = 0.6\n")
    assert config_version(load_config(other)) != base
    kafka = tmp_path / "kafka.toml"
    kafka.write_text('[kafka]\nbootstrap_servers = "elsewhere:9092"\n')
    assert config_version(load_config(kafka)) == base  # an address is not detection
    code = "from streams.core.config import VigilConfig; from streams.core.config_version import "
    code += "config_version; print(config_version(VigilConfig()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == base  # the same in another process
