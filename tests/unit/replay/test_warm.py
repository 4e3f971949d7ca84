"""`vigil warm`'s state: built through the replay path, continued exactly, reset or spliced
per detector."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from streams.core.config import VigilConfig
from streams.engine.engine import Engine, build_detectors
from streams.replay.reader import open_input, read_batches
from streams.replay.warm import load_state, reset, save_state, splice, warm_engine


def split_at(events: Path, share: float, out: Path, batch: int = 4096) -> tuple[Path, Path]:
    """The first lines (a whole number of reading batches, about `share` of them) and the
    rest: the same stream in two files, read in the same batches."""
    lines = gzip.decompress(events.read_bytes()).splitlines(keepends=True)
    k = round(len(lines) * share / batch) * batch
    a, b = out / "a.jsonl", out / "b.jsonl"
    a.write_bytes(b"".join(lines[:k]))
    b.write_bytes(b"".join(lines[k:]))
    return a, b


def _alerts(engine: Engine, path: Path) -> list:
    out = []
    with open_input(str(path)) as fh:
        for lines in read_batches(fh, 4096):
            out += engine.process_lines(lines).alerts
    return out + engine.flush().alerts


@pytest.fixture(scope="module")
def halves(small_corpus, tmp_path_factory):
    return split_at(small_corpus[0], 0.5, tmp_path_factory.mktemp("halves"))


def test_warm_then_the_rest_gives_the_whole_runs_later_alerts(small_corpus, halves, tmp_path):
    a, b = halves
    cfg = VigilConfig()
    warmed, summary = warm_engine(cfg, [str(a)])
    assert summary.lines > 0 and summary.accounts > 0 and warmed.pending  # not flushed
    path = tmp_path / "s.pkl"
    assert save_state(warmed, path) > 0
    cont = Engine(cfg)
    cont.load_state_dict(load_state(path))
    later = _alerts(cont, b)
    whole = _alerts(Engine(cfg), small_corpus[0])
    assert later and len(whole) == summary.alerts + len(later)
    assert [x.to_dict() for x in later] == [x.to_dict() for x in whole[summary.alerts :]]


def test_reset_leaves_one_detector_empty_and_splice_rewarms_it(halves) -> None:
    a, _ = halves
    cfg = VigilConfig()
    warmed, _ = warm_engine(cfg, [str(a)], build_detectors(cfg, classifier=False))
    state = warmed.state_dict()
    assert warmed.detectors["population"]._seen > 0
    fresh = Engine(cfg, detectors=build_detectors(cfg, classifier=False))
    fresh.load_state_dict(reset(state, ["population"]))
    assert fresh.detectors["population"]._seen == 0
    b_old = warmed.detectors["baseline"].state_dict()["avg"]
    assert np.array_equal(fresh.detectors["baseline"].state_dict()["avg"], b_old, equal_nan=True)
    with pytest.raises(ValueError, match="no detector nope"):
        reset(state, ["nope"])
    # Only the population detector through history, then into the reset state.
    only, _ = warm_engine(cfg, [str(a)], {"population": build_detectors(cfg, False)["population"]})
    splice(fresh, only, ["population"])
    assert fresh.detectors["population"]._seen == warmed.detectors["population"]._seen


def test_a_file_that_is_not_a_state_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "junk"
    p.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"junk: not a Vigil checkpoint \(it starts with"):
        load_state(p)
