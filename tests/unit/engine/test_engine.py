"""The engine end to end on generated traffic: alerts, state, failures, bounds."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest

from detectors.base import NoAccountState
from streams.core.alerts import CATEGORIES, SEVERITIES, Alert
from streams.core.config import VigilConfig
from streams.engine.build import DETECTOR_NAMES
from streams.engine.engine import Engine, ModelError, build_detectors
from streams.replay.reader import UnreadableInput, open_input, read_batches
from synth.evaluate import score_alerts
from tests.events_util import T0, line


def _lines(path: Path) -> list[list[bytes]]:
    with open_input(str(path)) as fh:
        return list(read_batches(fh, 4096))


def _run(engine: Engine, batches: list[list[bytes]], flush: bool = True) -> list[Alert]:
    alerts: list[Alert] = []
    for b in batches:
        alerts += engine.process_lines(b).alerts
    if flush:
        alerts += engine.flush().alerts
    return alerts


def test_alerts_follow_the_public_contract(small_corpus) -> None:
    events, labels = small_corpus
    alerts = _run(Engine(), _lines(events))
    assert alerts
    for a in alerts:
        d = orjson.loads(a.to_json())
        assert set(d) >= {
            "alert_id", "account_id", "ts", "severity", "score", "category",
            "detectors", "reasons", "window", "model_version",
        }  # fmt: skip
        assert d["severity"] in SEVERITIES and d["category"] in CATEGORIES
        assert 0.0 <= d["score"] <= 1.0
        assert d["reasons"] and all(r["text"] for r in d["reasons"])
        assert d["window"]["start"] < d["window"]["end"] == d["ts"]
        assert Alert.from_dict(d) == a
    q = score_alerts(alerts, orjson.loads(labels.read_bytes()))
    # Most misuse accounts are caught on this small corpus; the full bar is `vigil eval`.
    assert q.misuse_alerted >= 0.7 * sum(s.accounts for s in q.scenarios.values())
    assert q.precision >= 0.5


def test_replay_is_deterministic_and_alert_ids_stable(small_corpus) -> None:
    batches = _lines(small_corpus[0])
    a = [x.to_dict() for x in _run(Engine(), batches)]
    b = [x.to_dict() for x in _run(Engine(), batches)]
    assert a == b


def test_checkpoint_restore_gives_the_same_alerts(small_corpus) -> None:
    """Stop half way, save state, restore in a new engine: same alerts as one run."""
    batches = _lines(small_corpus[0])
    whole = _run(Engine(), batches)
    half = len(batches) // 2
    first = Engine()
    before = _run(first, batches[:half], flush=False)
    state = pickle.dumps(first.state_dict())
    second = Engine()
    second.load_state_dict(pickle.loads(state))
    after = _run(second, batches[half:])
    assert [a.alert_id for a in before + after] == [a.alert_id for a in whole]


def test_checkpoint_with_other_string_codes_is_refused(small_corpus) -> None:
    """History rings hold string codes: a checkpoint coded otherwise would silently make
    every IP look new, so loading it must fail loudly."""
    eng = Engine()
    _run(eng, _lines(small_corpus[0])[:3], flush=False)
    state = eng.state_dict()
    state["codes"] = state["codes"] - 1
    with pytest.raises(ValueError, match="string coding"):
        Engine().load_state_dict(state)


def test_eviction_frees_slots_by_code_and_reuses_them(small_corpus) -> None:
    eng = Engine()
    _run(eng, _lines(small_corpus[0])[:3], flush=False)
    held = len(eng.table)
    freed = eng.table.evict(now=2e10, ttl=1.0, max_accounts=10**6)
    assert len(freed) == held and len(eng.table) == 0
    state = eng.state_dict()
    Engine().load_state_dict(state)  # an empty table round-trips too


def test_a_failing_detector_dead_letters_its_window_and_the_stream_goes_on() -> None:
    class Broken(NoAccountState):
        name, version = "broken", "0"

        def score_learn(self, batch):
            if batch.window_start[0] == T0:
                raise RuntimeError("boom")
            return np.zeros(len(batch))

    dets = {"broken": Broken()}
    eng = Engine(VigilConfig(), detectors=dets, clock=lambda: T0 + 86_400)
    out = eng.process_lines([line(ts=T0 + 1), line(ts=T0 + 2), line(ts=T0 + 301)])
    out.extend(eng.flush())
    assert [d.reason for d in out.dead_letters] == ["processing_error"] * 2
    assert "boom" in out.dead_letters[0].detail
    assert eng.metrics.events_processed._value.get() == 1


def test_idle_accounts_are_evicted_and_state_is_bounded() -> None:
    cfg = VigilConfig()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, account_ttl_s=3600))
    eng = Engine(cfg, detectors={}, clock=lambda: T0 + 10 * 86_400)
    # 200 accounts active in the first minutes, then only one account for a day.
    eng.process_lines([line(ts=T0 + i, account_id=f"a{i}") for i in range(200)])
    for h in range(1, 24):
        eng.process_lines([line(ts=T0 + h * 3600 + k, account_id="steady") for k in range(3)])
    eng.flush()
    assert len(eng.table) <= 2
    assert eng.metrics.accounts_evicted._value.get() >= 200


def test_model_failure_stops_the_engine_unless_asked_to_run_without_it(tmp_path) -> None:
    cfg = dataclasses.replace(VigilConfig(), model_path=str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelError, match="missing.onnx"):
        Engine(cfg)
    eng = Engine(cfg, detectors=build_detectors(cfg, classifier=False))
    assert "classifier" not in eng.detectors
    assert eng.metrics.model_loaded._value.get() == 0
    assert set(build_detectors(VigilConfig())) >= {"rules", "baseline", "campaign", "classifier"}
    assert Engine(VigilConfig()).metrics.model_loaded._value.get() == 1


def test_the_detector_names_a_snooze_may_give_are_those_the_engine_builds() -> None:
    # `vigil control snooze --detector` refuses any other name.
    assert tuple(build_detectors(VigilConfig())) == DETECTOR_NAMES


def test_read_ahead_gives_the_same_batches_and_raises_reader_errors(small_corpus, tmp_path) -> None:
    events = small_corpus[0]
    with open_input(str(events)) as a, open_input(str(events)) as b:
        assert list(read_batches(a, 1000, read_ahead=True)) == list(read_batches(b, 1000))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(events.read_bytes()[: len(events.read_bytes()) // 2])
    # The reader thread's error comes out here, as one line, after the lines before it
    # (tests/unit/replay/test_reader.py).
    with open_input(str(broken)) as fh, pytest.raises(UnreadableInput):
        for _ in read_batches(fh, 1000, read_ahead=True):
            pass


def test_journal_checkpoints_restore_the_open_windows(small_corpus) -> None:
    """Checkpoints that store open events once, in journal segments, restore the same
    engine: same alerts as one run, and segments of closed windows are dropped."""
    from streams.kafka import checkpoint

    batches = [b for big in _lines(small_corpus[0]) for b in (big[:2048], big[2048:]) if b]
    whole = _run(Engine(), batches)
    table: dict = {}

    def save(engine: Engine) -> None:
        lines, newest = engine.take_journal()
        blob = checkpoint.encode_state(engine.state_dict(pending=False))
        journal = checkpoint.encode_journal(lines)
        checkpoint.write(table, "t", 0, blob, {}, journal, newest, engine.closed_until)

    first = Engine()
    first.journal_pending = True
    half = len(batches) // 2
    before: list[Alert] = []
    for b in batches[:half]:
        before += first.process_lines(b).alerts
        save(first)
    assert first.pending, "the test must stop with windows open"
    state, manifest, journal = checkpoint.read(table, "t", 0)
    assert len(state["pending"]) == 0 and len(journal) >= sum(len(p) for p in first.pending)
    # Segments holding only closed windows were deleted, with their chunks.
    assert len(manifest.segments) < half
    assert sum(k.startswith(b"p0/s") for k in table) == sum(s[1] for s in manifest.segments)
    second = Engine()
    second.journal_pending = True
    second.load_state_dict(state)
    second.restore_pending(journal)
    assert len(second.pending[0]) == sum(len(p) for p in first.pending)
    after = _run(second, batches[half:])
    assert [a.alert_id for a in before + after] == [a.alert_id for a in whole]
