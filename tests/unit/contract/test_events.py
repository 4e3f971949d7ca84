"""The input contract: every class of bad event is dead-lettered with its reason."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from streams.contract.events import decode_lines
from streams.core.config import VigilConfig
from streams.engine.engine import Engine
from tests.events_util import T0, line

NOW = T0 + 3600

BAD = [
    (b'{"event_id": "x", "ts": ', "malformed_json"),
    (b"\xff\xfe\x00 not utf-8", "invalid_utf8"),
    (b'{"event_id": "\xff", "ts": 1, "account_id": "a", "endpoint": "e"}', "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (line(event_id=...), "missing_field"),
    (line(ts=...), "missing_field"),
    (line(account_id=...), "missing_field"),
    (line(endpoint=...), "missing_field"),
    (line(account_id=42), "wrong_type"),
    (line(endpoint=["chat"]), "wrong_type"),
    (line(prompt_tokens="12"), "wrong_type"),
    (line(status=200.5), "wrong_type"),
    (line(flagged="yes"), "wrong_type"),
    (line(moderation={"hate": "high"}), "wrong_type"),
    (line(prompt_tokens=-1), "negative_tokens"),
    (line(completion_tokens=-7), "negative_tokens"),
    (line(ts="yesterday"), "bad_timestamp"),
    (line(ts="2026-10-01T00:00:00"), "bad_timestamp"),
    (line(ts=NOW + 2 * 86_400), "future_timestamp"),
    (line(ts=-1e20), "bad_timestamp"),  # regression: in no count, dead letter or window
    (line(ts=-1), "bad_timestamp"),
    (line(ts="0001-01-01T00:00:00Z"), "bad_timestamp"),
    (b'{"event_id": "big", "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD, ids=[f"{r}-{i}" for i, (_, r) in enumerate(BAD)])
def test_bad_event_is_dead_lettered_with_reason(raw: bytes, reason: str) -> None:
    good = [line(), line()]
    batch, dead = decode_lines([good[0], raw, good[1]], now_ts=NOW)
    assert len(batch) == 2, "the good events around a bad one are kept"
    assert [(d.reason, d.raw) for d in dead] == [(reason, raw)]
    assert dead[0].detail


@pytest.mark.parametrize("empty", [b"", b"   ", b"\t"])
def test_empty_record_is_dead_lettered_not_dropped(empty: bytes) -> None:
    """Regression: an empty record inside a batch decoded as nothing and vanished."""
    for lines in ([empty], [line(), empty], [empty, line(), line()]):
        batch, dead = decode_lines(lines, now_ts=NOW)
        assert len(batch) + len(dead) == len(lines)
        assert [(d.reason, d.detail) for d in dead] == [("malformed_json", "empty record")]


def test_accepts_both_timestamp_forms_and_ignores_unknown_fields() -> None:
    batch, dead = decode_lines(
        [line(ts="2026-10-01T02:00:00+02:00"), line(ts=T0 + 5.5, extra={"x": 1})], now_ts=NOW
    )
    assert dead == []
    assert batch.ts.tolist() == [T0, T0 + 5.5]


def test_explicit_nulls_mean_absent() -> None:
    raw = line(ip=None, status=None, flagged=None, moderation=None, account_created=None)
    batch, dead = decode_lines([raw, line()], now_ts=NOW)
    assert dead == []
    assert batch.ip.tolist()[0] == 0 and batch.status.tolist()[0] == 200
    assert np.isnan(batch.account_created[0]) and not batch.flagged[0]


def test_optional_fields_default() -> None:
    raw = orjson.dumps({"event_id": "e", "ts": T0, "account_id": "a", "endpoint": "embeddings"})
    batch, dead = decode_lines([raw], now_ts=NOW)
    assert dead == []
    assert batch.status.tolist() == [200]
    assert batch.prompt_tokens.tolist() == [0]
    assert batch.ip.tolist() == [0]


def _engine(**engine_over) -> Engine:
    cfg = VigilConfig()
    if engine_over:
        import dataclasses

        cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, **engine_over))
    return Engine(cfg, detectors={}, clock=lambda: NOW)


def test_engine_accounts_for_every_line() -> None:
    """read == processed + rejected + duplicates: nothing is lost silently."""
    eng = _engine()
    lines = [line(ts=T0 + i) for i in range(50)] + [raw for raw, _ in BAD]
    lines.append(lines[3])  # a duplicate
    out = eng.process_lines(lines)
    out.extend(eng.flush())
    m = eng.metrics
    processed = m.events_processed._value.get()
    rejected = sum(m.events_rejected.labels(r)._value.get() for r in {reason for _, reason in BAD})
    assert processed == 50
    assert rejected == len(BAD) == len(out.dead_letters)
    assert m.events_duplicate._value.get() == 1
    assert m.events_read._value.get() == processed + rejected + 1


def test_late_event_is_dead_lettered_and_in_time_disorder_is_not() -> None:
    eng = _engine(allowed_lateness_s=60)
    out = eng.process_lines([line(ts=T0 + 10), line(ts=T0 + 400)])  # watermark 340: [0,300) closes
    assert out.dead_letters == []
    out = eng.process_lines([line(ts=T0 + 310), line(ts=T0 + 20)])
    assert [d.reason for d in out.dead_letters] == ["too_late"]
    out.extend(eng.flush())
    assert eng.metrics.events_processed._value.get() == 3


def test_out_of_order_event_lands_in_its_window() -> None:
    seen = []
    eng = Engine(VigilConfig(), detectors={}, clock=lambda: NOW, on_features=seen.append)
    eng.process_lines([line(ts=T0 + 290), line(ts=T0 + 330), line(ts=T0 + 100)])
    eng.flush()
    counts = {float(b.window_start[0]): b.col("requests").tolist() for b in seen}
    assert counts == {T0: [2.0], T0 + 300: [1.0]}


def test_duplicates_across_batches_processed_once() -> None:
    eng = _engine()
    first = line(ts=T0 + 1)
    eng.process_lines([first, line(ts=T0 + 2)])
    eng.process_lines([first])
    eng.flush()
    assert eng.metrics.events_processed._value.get() == 2
    assert eng.metrics.events_duplicate._value.get() == 1


def test_a_duplicate_within_one_batch_keeps_the_first_copy() -> None:
    seen = []
    eng = Engine(VigilConfig(), detectors={}, clock=lambda: NOW, on_features=seen.append)
    a = line(ts=T0 + 1, prompt_tokens=1)
    resent = orjson.loads(a)
    resent["prompt_tokens"] = 999  # same event id, different body: the second is dropped
    eng.process_lines([a, line(ts=T0 + 2, prompt_tokens=2), orjson.dumps(resent), a])
    eng.flush()
    assert eng.metrics.events_duplicate._value.get() == 2
    assert [b.col("prompt_tokens").tolist() for b in seen] == [[3.0]]


def test_event_ids_are_remembered_for_a_horizon_then_forgotten() -> None:
    eng = _engine(dedup_horizon_s=600)
    first = line(ts=T0 + 1)
    eng.process_lines([first])
    eng.process_lines([line(ts=T0 + 500)])
    # Reloaded from a checkpoint in between: the ids travel with the state.
    restored = _engine(dedup_horizon_s=600)
    restored.load_state_dict(eng.state_dict())
    restored.process_lines([line(ts=T0 + 650)])  # a new generation: the first one is older
    restored.process_lines([orjson.dumps({**orjson.loads(first), "ts": T0 + 651})])
    assert restored.metrics.events_duplicate._value.get() == 1  # still remembered
    # Generations turn at the batch after the one that passes their end.
    restored.process_lines([line(ts=T0 + 1300)])
    restored.process_lines([line(ts=T0 + 1310)])  # two generations on: forgotten
    restored.process_lines([orjson.dumps({**orjson.loads(first), "ts": T0 + 1311})])
    assert restored.metrics.events_duplicate._value.get() == 1
