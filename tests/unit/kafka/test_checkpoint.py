"""Checkpoint blobs and manifests (streams/kafka/checkpoint.py)."""

from __future__ import annotations

import pickle
import zlib

import numpy as np

from streams.kafka import checkpoint


def test_state_blob_round_trip():
    rng = np.random.default_rng(0)
    state = {
        "arr": np.arange(10_000.0),  # compresses
        "ids": rng.integers(0, 2**63, 10_000, dtype=np.uint64),  # does not
        "sets": ({"a"}, {"b"}),
        "x": -np.inf,
    }
    blob = checkpoint.encode_state(state)
    back = checkpoint.decode_state(blob)
    assert np.array_equal(back["arr"], state["arr"]) and np.array_equal(back["ids"], state["ids"])
    assert back["sets"] == state["sets"] and back["x"] == -np.inf
    back["arr"][0] = 5.0  # engines update restored arrays in place
    assert len(blob) < 80_000 + 20_000  # the ids stay raw, the range is deflated
    # Checkpoints written before buffers went out of band still load.
    legacy = zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)
    assert np.array_equal(checkpoint.decode_state(legacy)["ids"], state["ids"])
    m = checkpoint.Manifest(3, 2, {"t": 10, "t-by-account": 4}, 999)
    assert checkpoint.Manifest.from_bytes(m.to_bytes()) == m
    assert checkpoint.chunk_key(5, 3, 1) != checkpoint.chunk_key(5, 4, 1)
