"""One checkpoint codec for every runner: a real engine's state survives it, replay's state
files and the worker's checkpoints are the same bytes, the blobs written before the codec
still load, and damaged or foreign bytes fail with one line."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path

import cramjam
import numpy as np
import pytest

from streams.core.config import VigilConfig
from streams.engine.engine import Engine, build_detectors
from streams.kafka import checkpoint
from streams.replay.warm import load_state, save_state
from streams.runtime.checkpoint_codec import (
    FORMAT_VERSION,
    CheckpointFormatError,
    decode_state,
    encode_state,
)
from tests.plugins.old_checkpoint_format import old_worker_encode


def _batches(events: Path, size: int = 4096) -> list[list[bytes]]:
    lines = gzip.decompress(events.read_bytes()).splitlines()
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def _engine() -> Engine:
    cfg = VigilConfig()
    return Engine(cfg, detectors=build_detectors(cfg, classifier=False))


def _alerts(engine: Engine, batches: list[list[bytes]]) -> list[dict]:
    out = []
    for b in batches:
        out += engine.process_lines(b).alerts
    return [a.to_dict() for a in out + engine.flush().alerts]


@pytest.fixture(scope="module")
def halfway(small_corpus) -> tuple[Engine, list[list[bytes]]]:
    """An engine that has seen the first half of the corpus (windows still open), and the
    batches of the rest."""
    batches = _batches(small_corpus[0])
    engine = _engine()
    for b in batches[: len(batches) // 2]:
        engine.process_lines(b)
    assert engine.pending and len(engine.table) > 0
    return engine, batches[len(batches) // 2 :]


def test_a_real_engine_state_round_trips_and_continues_the_same(halfway) -> None:
    engine, rest = halfway
    blob = encode_state(engine.state_dict())
    assert blob[:4] == b"VGS" + str(FORMAT_VERSION).encode()
    state = decode_state(blob)
    assert set(state) == set(engine.state_dict())
    ids = engine.state_dict()["seen_ids"][0]
    assert isinstance(ids, np.ndarray) and np.array_equal(state["seen_ids"][0], ids)
    state["seen_ids"][0][:1] = 0  # writable: engines update restored arrays in place
    restored = _engine()
    restored.load_state_dict(decode_state(blob))
    original = _engine()
    original.load_state_dict(engine.state_dict())
    later = _alerts(restored, rest)
    assert later and later == _alerts(original, rest)


def test_replay_state_files_and_worker_checkpoints_are_one_format(halfway, tmp_path) -> None:
    engine, _ = halfway
    path = tmp_path / "state"
    size = save_state(engine, path)
    blob = path.read_bytes()
    assert size == len(blob) and blob == checkpoint.encode_state(engine.state_dict())
    # Version 3 holds the same parts as version 2, the worker's format before it, which
    # differs only in compressing with zlib where it now takes zstd.
    assert blob[:4] == b"VGS3"
    v2 = old_worker_encode(engine.state_dict())
    assert _part_sizes(v2) == _part_sizes(blob, inflated=True) and len(blob) < len(v2)
    # Replay's file through the worker's reader ...
    table: dict = {}
    checkpoint.write(table, "t", 3, blob, {"t": 42})
    state, manifest, journal = checkpoint.read(table, "t", 3)
    assert manifest.offsets == {"t": 42} and journal == []
    worker = _engine()
    worker.load_state_dict(state)
    assert len(worker.table) == len(engine.table) and worker.max_ts == engine.max_ts
    # ... and a worker's checkpoint (state without open events) as a replay state file.
    path.write_bytes(checkpoint.encode_state(engine.state_dict(pending=False)))
    replayed = _engine()
    replayed.load_state_dict(load_state(path))
    assert len(replayed.table) == len(engine.table) and not replayed.pending


def _part_sizes(blob: bytes, inflated: bool = False) -> list[int]:
    """Sizes of a blob's parts, uncompressed when `inflated`, else as version 2 stored them."""
    n = struct.unpack_from("<I", blob, 4)[0]
    at = 8 + 9 * n
    out = []
    for i in range(n):
        flag, size = struct.unpack_from("<BQ", blob, 8 + 9 * i)
        data = blob[at : at + size]
        at += size
        if inflated:
            out.append(len(cramjam.zstd.decompress(data)) if flag == 2 else size)
        else:
            out.append(len(zlib.decompress(data)) if flag == 1 else size)
    return out


def test_blobs_written_before_the_codec_still_load(halfway) -> None:
    engine, _ = halfway
    state = engine.state_dict()
    old_worker = old_worker_encode(state)
    first_worker = zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)
    old_replay = pickle.dumps(state, protocol=5)  # `replay --state` and `warm` before
    for blob in (old_worker, first_worker, old_replay):
        back = decode_state(blob)
        assert back["max_ts"] == state["max_ts"]
        assert np.array_equal(back["seen_ids"][0], state["seen_ids"][0])
        assert len(back["pending"]) == len(state["pending"]) > 0


def test_an_old_plain_pickle_state_file_loads_and_is_rewritten(halfway, tmp_path) -> None:
    engine, _ = halfway
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps(engine.state_dict(), protocol=5))
    e = _engine()
    e.load_state_dict(load_state(path))
    save_state(e, path)
    assert path.read_bytes()[:4] == b"VGS3" and not (tmp_path / "old.pkl.partial").exists()
    assert load_state(path)["max_ts"] == engine.max_ts


def _mutations(blob: bytes) -> list[tuple[str, bytes, str]]:
    n = struct.unpack_from("<I", blob, 4)[0]
    data_at = 8 + 9 * n
    zipped = zlib.compress(pickle.dumps({"x": 1}))
    return [
        ("empty", b"", "empty"),
        ("cut in the magic", blob[:3], "truncated"),
        ("cut in the header", blob[:6], "truncated"),
        ("cut in the part table", blob[: data_at - 4], "truncated"),
        ("cut in the first part", blob[: data_at + 10], "truncated"),
        ("cut one byte short", blob[:-1], "truncated"),
        ("a byte too many", blob + b"\0", "corrupt"),
        ("flipped magic", b"XGS2" + blob[4:], "not a Vigil checkpoint"),
        ("flipped first bit", bytes([blob[0] ^ 1]) + blob[1:], "not a Vigil checkpoint"),
        ("newer version", b"VGS4" + blob[4:], "newer Vigil"),
        ("unknown version", b"VGS\xff" + blob[4:], "unknown format version"),
        ("bad compression flag", blob[:8] + b"\x07" + blob[9:], "compression flag 7"),
        ("garbled pickle", blob[:data_at] + b"\x00" * 16 + blob[data_at + 16 :], "corrupt"),
        ("garbled old deflate", zipped[:-6] + b"\0" * 6, "corrupt"),
        ("garbled old pickle", pickle.dumps({"x": 1})[:-3], "truncated or corrupt"),
        ("a zip file", b"PK\x03\x04" + blob[4:], "not a Vigil checkpoint"),
    ]


def test_damaged_or_foreign_bytes_fail_with_one_line(halfway) -> None:
    engine, _ = halfway
    blob = encode_state(engine.state_dict())
    assert blob[8] == 2  # the pickle part is compressed, so "bad compression flag" is a change
    for name, bad, words in _mutations(blob):
        with pytest.raises(CheckpointFormatError) as info:
            decode_state(bad)
        msg = str(info.value)
        assert isinstance(info.value, ValueError), name
        assert words in msg and "\n" not in msg and len(msg) < 200, (name, msg)


def test_a_damaged_state_file_names_the_file_and_the_problem(halfway, tmp_path) -> None:
    engine, _ = halfway
    path = tmp_path / "state"
    save_state(engine, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"^{path}: truncated: 1,000 bytes where"):
        load_state(path)
    path.write_bytes(encode_state(["a journal", "not a state"]))
    with pytest.raises(ValueError, match="not an engine state"):
        load_state(path)
