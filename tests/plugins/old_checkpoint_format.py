"""The worker's checkpoint format before the shared codec (VGS2), frozen as it was written.

The codec must stay byte-compatible with it (tests/unit/runtime/test_checkpoint_codec.py),
and bench/bench_state_codec.py times it beside the codec. Do not change it to follow the
codec: it is the reference the codec is held to.
"""

from __future__ import annotations

import pickle
import struct
import zlib

_HEAD, _PART = struct.Struct("<4sI"), struct.Struct("<BQ")


def _old_squeeze(data):
    if len(data) >= 512:
        sample = data[: 64 * 1024]
        if len(zlib.compress(sample, 1)) < 0.8 * len(sample):
            return 1, zlib.compress(data, 1)
    return 0, data


def old_worker_encode(state) -> bytes:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(state, protocol=5, buffer_callback=buffers.append)
    parts = [_old_squeeze(memoryview(body))] + [_old_squeeze(b.raw()) for b in buffers]
    head = [_HEAD.pack(b"VGS2", len(parts))] + [_PART.pack(f, len(d)) for f, d in parts]
    return b"".join([*head, *(d for _, d in parts)])


def old_worker_decode(blob: bytes):
    _, n = _HEAD.unpack_from(blob)
    at = _HEAD.size + n * _PART.size
    parts = []
    for i in range(n):
        flag, size = _PART.unpack_from(blob, _HEAD.size + i * _PART.size)
        data = blob[at : at + size]
        at += size
        parts.append(bytearray(zlib.decompress(data) if flag else data))
    return pickle.loads(parts[0], buffers=parts[1:])  # noqa: S301
