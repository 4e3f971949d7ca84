"""Chunks no manifest names, as a worker killed between a checkpoint's writes and its
deletes leaves them, are deleted when the partition opens from its checkpoint."""

from __future__ import annotations

from faust.types import TP

from streams.kafka import checkpoint
from tests.unit.kafka.fakes import IN, REP, every_partition, make_processor, record_block, run_async


def test_a_partition_opens_without_the_chunks_its_manifest_does_not_name():
    assignment = every_partition(2, (IN, REP))
    proc, _ = make_processor(assignment)

    async def first() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        await proc.checkpoint()
        await proc.on_batch(TP(IN, 0), record_block(0))
        await proc.checkpoint()

    run_async(first())
    table = proc.table
    named = set(table)
    manifest = checkpoint.read_manifest(table, IN, 1)
    assert manifest is not None and manifest.segments
    # Left by a kill: the previous generation's state and segment, a generation whose
    # manifest never came, an id segment; and a key of partition 0 beside them.
    stray = [
        checkpoint.chunk_key(1, manifest.generation - 1, 0),
        checkpoint.segment_key(1, manifest.generation + 1, 0),
        checkpoint.chunk_key(1, manifest.generation + 1, 3),
        checkpoint.seen_key(1, "9.9", 0),
    ]
    for key in stray:
        table[key] = b"left behind"
    table[b"p0/kept-by-another-partition"] = b"x"

    again, _ = make_processor(assignment)
    again.table = table

    async def second() -> None:
        again.on_assigned(assignment)
        await again.on_batch(TP(IN, 1), record_block(2))
        # Restored from its checkpoint, as before the kill, then given the next record.
        assert again.parts[1].engine.lines == [b'{"account_id": "acct_1"}'] * 3

    run_async(second())
    assert not set(stray) & set(table)
    assert named <= set(table) and b"p0/kept-by-another-partition" in table
    # Nothing named is lost: the state reads back whole.
    assert checkpoint.read(table, IN, 1) is not None


def test_a_sweep_keeps_every_key_a_manifest_names():
    m = checkpoint.Manifest(4, 2, segments=[[3, 2, 1.0]], seen=[["4.1", 1, 1]], held=[[2, 1, []]])
    table = {
        checkpoint.chunk_key(7, 4, 0): b"",
        checkpoint.chunk_key(7, 4, 1): b"",
        checkpoint.segment_key(7, 3, 0): b"",
        checkpoint.segment_key(7, 3, 1): b"",
        checkpoint.seen_key(7, "4.1", 0): b"",
        checkpoint.held_key(7, 2, 0): b"",
        checkpoint.manifest_key(7): b"",
        checkpoint.chunk_key(70, 1, 0): b"",
    }
    kept = dict(table)
    table[checkpoint.chunk_key(7, 4, 2)] = b""  # one chunk past the manifest's count
    table[checkpoint.held_key(7, 1, 0)] = b""
    assert checkpoint.sweep(table, IN, 7, m) == 2
    assert table == kept
    # No manifest at all: every chunk of the partition goes, the manifest key is not one.
    assert checkpoint.sweep(table, IN, 7, None) == 6 and set(table) == {
        checkpoint.manifest_key(7),
        checkpoint.chunk_key(70, 1, 0),
    }


def test_discard_deletes_the_keys_its_manifest_names_and_the_manifest():
    m = checkpoint.Manifest(4, 2, segments=[[3, 2, 1.0]], seen=[["4.1", 1, 1]], held=[[2, 1, []]])
    named = [
        checkpoint.chunk_key(7, 4, 0),
        checkpoint.chunk_key(7, 4, 1),
        checkpoint.segment_key(7, 3, 0),
        checkpoint.segment_key(7, 3, 1),
        checkpoint.seen_key(7, "4.1", 0),
        checkpoint.held_key(7, 2, 0),
    ]
    table = {key: b"" for key in named}
    table[checkpoint.manifest_key(7)] = m.to_bytes()
    # Named by no manifest (the sweep's work), and another partition's: both stay.
    others = {checkpoint.chunk_key(7, 3, 0): b"", checkpoint.chunk_key(70, 1, 0): b""}
    table.update(others)
    checkpoint.discard(table, IN, 7)
    assert table == others
