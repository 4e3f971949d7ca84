"""`vigil dashboards render` after a paced replay: every panel draws data from a real
Prometheus, and what should move does.

The live demo's own pieces run here (dashboards/demo_live.py): a paced `vigil replay` with
/metrics and a store, the console on that store with a simulated analyst giving verdicts,
and Prometheus scraping both with the rules loaded. Panels that only a Kafka deployment
feeds (a worker's consumer lag and recovery, the store sink) are the only ones allowed to
be empty; they are checked against a worker in tests/test_obs_scrape.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from dashboards import demo_live

VIGIL = str(Path(sys.executable).with_name("vigil"))
NEEDS_KAFKA = {
    "Consumer lag by partition",
    "Workers recovering",
    "Store sink lag and errors",
    "Event time held back",
    "Backlog waiting",
}
# Time series that hold still in a three-hour replay, and why.
STEADY = {
    "Checkpoint age": "replay without --state never checkpoints: 0 throughout",
    "Evicted accounts per second": "accounts are evicted after 3 idle days",
    "Alerts within the latency objective": "every alert is on time when paced: 100%",
    "Workers and rebalances": "both targets stay up; rebalances are Kafka's",
    "Shadow agreement": "the paced replay runs no shadow model: 0 throughout",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    work = tmp_path_factory.mktemp("render")
    gen = [VIGIL, "generate", "--accounts", "200", "--hours", "3", "--seed", "3"]
    subprocess.run([*gen, "--out", str(work / "data")], check=True, timeout=300)
    events = work / "data" / "events.jsonl.gz"
    lines = demo_live.count_lines(events)
    t0 = time.time()
    with ExitStack() as stack:
        # Three hours of event time in about 50 s: windows close every 1.7 s.
        demo = demo_live.start(stack, work / "live", events, speed=216)
        demo_live.wait_for_input(demo, int(lines * 0.9), timeout_s=400)
        time.sleep(3 * demo_live.SCRAPE_S)
        minutes = (time.time() - t0) / 60 + 0.2
        out = work / "img"
        cmd = [VIGIL, "dashboards", "render", "--prometheus", demo.prometheus_url, "--out"]
        cmd += [str(out), "--minutes", f"{minutes:.2f}", "--step", "2", "--rate-interval", "10s"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "panels.json").read_text())


def test_one_image_per_dashboard(rendered: tuple[Path, list[dict]]) -> None:
    out, _ = rendered
    boards = sorted(p.stem for p in (Path(demo_live.REPO) / "dashboards" / "json").glob("*.json"))
    images = sorted(p.stem for p in out.glob("*.png"))
    assert images == boards
    for image in out.glob("*.png"):
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 50_000


def test_every_panel_drew_data(rendered: tuple[Path, list[dict]]) -> None:
    _, panels = rendered
    shown = [p for p in panels if p["kind"] not in ("row", "text", "annotation")]
    assert len(shown) >= 35
    empty = {p["title"] for p in shown if p["series"] == 0 or p["points"] == 0}
    assert empty <= NEEDS_KAFKA, f"no data: {sorted(empty - NEEDS_KAFKA)}"


def test_time_series_move(rendered: tuple[Path, list[dict]]) -> None:
    _, panels = rendered
    moving_kinds = ("timeseries", "heatmap")
    still = {
        p["title"] for p in panels if p["kind"] in moving_kinds and p["series"] and not p["moving"]
    }
    assert still <= set(STEADY), f"flat where they should move: {sorted(still - set(STEADY))}"
    assert len([p for p in panels if p["moving"]]) >= 20


def test_annotations_mark_the_start(rendered: tuple[Path, list[dict]]) -> None:
    """The replay's start shows as a restart, a model change and a config change."""
    _, panels = rendered
    names = {p["title"].split(":")[0] for p in panels if p["kind"] == "annotation"}
    assert names == {"model change", "config change", "restart"}
