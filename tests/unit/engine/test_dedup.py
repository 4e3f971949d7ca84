"""Deduplication ids in incremental checkpoints (streams/engine/dedup.py): each id written
once, in segments by generation, and restored to the same two generations."""

from __future__ import annotations

import dataclasses

from streams.core.config import VigilConfig
from streams.engine import dedup
from streams.engine.engine import Engine
from streams.kafka import checkpoint
from tests.events_util import T0, line

HORIZON = 600


def _engine() -> Engine:
    cfg = VigilConfig()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, dedup_horizon_s=HORIZON))
    engine = Engine(cfg)
    engine.journal_pending = True
    return engine


def _batch(start: int, n: int, t: float) -> list[bytes]:
    return [
        line(event_id=f"e{i}", ts=t + i * 0.01, account_id=f"a{i % 50}")
        for i in range(start, start + n)
    ]


def _save(engine: Engine, table: dict) -> None:
    lines, newest = engine.take_journal()
    checkpoint.write(
        table,
        "t",
        0,
        checkpoint.encode_state(engine.state_dict(pending=False)),
        {},
        checkpoint.encode_journal(lines),
        newest,
        engine.journal_floor,
        checkpoint.encode_seen(engine.take_seen()),
        engine.seen_from,
    )


def _restore(table: dict) -> Engine:
    state, manifest, journal = checkpoint.read(table, "t", 0)
    engine = _engine()
    engine.load_state_dict(state)
    engine.restore_seen(checkpoint.read_seen(table, "t", 0, manifest))
    engine.restore_pending(journal)
    return engine


def _ids(engine: Engine) -> tuple[set, set]:
    cur, prev = engine._seen_ids
    return set(cur.ids().tolist()), set(prev.ids().tolist())


def test_restored_ids_match_across_turnovers_and_whole_rewrites() -> None:
    table: dict = {}
    first = _engine()
    t, start, sizes = T0, 0, []
    # Turnovers every 600 s of event time, 60 checkpoints apart: more checkpoints in one
    # generation than WHOLE_EVERY, so that generations are written whole.
    for i in range(5 * dedup.WHOLE_EVERY):
        first.process_lines(_batch(start, 40, t))
        start, t = start + 40, t + 10
        _save(first, table)
        manifest = checkpoint.read_manifest(table, "t", 0)
        sizes.append(len(manifest.seen))
        if i % 7 == 0:
            assert _ids(_restore(table)) == _ids(first)
    assert _ids(_restore(table)) == _ids(first)
    assert first._seen_gen >= 2
    # Bounded: whole rewrites and forgotten generations drop segments, and their chunks.
    assert max(sizes) <= 2 * dedup.WHOLE_EVERY + 1
    seen_chunks = sum(k.startswith(b"p0/i") for k in table)
    assert seen_chunks == sum(s[1] for s in manifest.seen)
    assert {s[2] for s in manifest.seen} <= {first._seen_gen - 1, first._seen_gen}
    # The state carries no ids; the segments do.
    state, _, _ = checkpoint.read(table, "t", 0)
    assert all(len(ids) == 0 for ids in state["seen_ids"])


def test_a_duplicate_after_a_restore_is_still_a_duplicate() -> None:
    table: dict = {}
    first = _engine()
    batch = _batch(0, 200, T0)
    first.process_lines(batch)
    _save(first, table)
    second = _restore(table)
    second.process_lines(batch[:30] + _batch(200, 10, T0 + 2))
    assert second.metrics.events_duplicate._value.get() == 30
    # And without the segments the engine would have taken them again: the test can fail.
    state, _, _ = checkpoint.read(table, "t", 0)
    bare = _engine()
    bare.load_state_dict(state)
    bare.process_lines(batch[:30])
    assert bare.metrics.events_duplicate._value.get() == 0


def test_a_state_that_carries_its_ids_is_journaled_at_the_next_checkpoint() -> None:
    """A replay state (or a checkpoint from before ids were journaled) holds its ids; a
    worker loading it writes them as segments, and its own states leave them out."""
    replay = Engine(_engine().cfg)
    replay.process_lines(_batch(0, 300, T0))
    state = replay.state_dict()
    assert sum(len(ids) for ids in state["seen_ids"]) == 300
    worker = _engine()
    worker.load_state_dict(state)
    table: dict = {}
    _save(worker, table)
    assert _ids(_restore(table)) == _ids(replay)
