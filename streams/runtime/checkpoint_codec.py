"""The one byte format of engine state: `vigil replay --state`, `vigil warm` and the
worker's checkpoints (streams/kafka/checkpoint.py) all write and read it through here.

Layout (little-endian), format version 3:

    b"VGS" + version   4 bytes: magic, then the version as an ASCII digit ("3")
    part count         uint32
    per part           uint8 compression flag (0 raw, 1 zlib, 2 zstd), uint64 length
    the parts          part 0 is the pickle (protocol 5); the others are the numpy buffers
                       it refers to, pickled out of band

Each part is compressed only if it compresses: the recent event ids are random 64-bit
codes, and compressing them costs more time than anything else in a checkpoint. Version 3
compresses with zstd at level 1 (flag 2), which on the journal of raw events takes a third
of the time of zlib at level 1 and gives 30% fewer bytes (bench/bench_state_codec.py).
Version 2, zlib only (flag 1), is what the worker wrote until 2026-12-03 and is still read;
a worker rolled back to a release that reads only version 2 refuses version 3 in one line,
so roll back with an empty state or after replaying.

Two older layouts carry no magic and are still read: the worker's first checkpoints (one
deflated pickle, zlib's 0x78 first byte) and the plain pickles that `replay --state` and
`warm` wrote (pickle's 0x80 first byte). Anything else fails with CheckpointFormatError,
one line saying what is wrong. There is no checksum of its own: on Kafka each record batch
carries a CRC32C, and on disk the exact length check finds the usual damage, a file cut
short.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import cramjam

MAGIC = b"VGS"
FORMAT_VERSION = 3
READS = (b"2", b"3")  # version 2 has no zstd parts: the same reader takes both
RAW, ZLIB, ZSTD = 0, 1, 2
_HEAD = struct.Struct("<4sI")  # magic + version digit, part count
_PART = struct.Struct("<BQ")  # compressed flag, length
_SAMPLE = 64 * 1024
_ZLIB_FIRST = 0x78  # a zlib stream's first byte at every level the worker used
_PICKLE_FIRST = 0x80  # pickle's PROTO opcode, first byte of protocols 2 and later


class CheckpointFormatError(ValueError):
    """The bytes are not a state this build can read; the message is one line."""


def _squeeze(data: memoryview) -> tuple[int, bytes | memoryview]:
    if len(data) >= 512:
        # Level 1: speed matters more than ratio. A sample decides whether to bother.
        # cramjam releases the GIL, so the worker's encoder threads share the cores.
        sample = data[:_SAMPLE]
        if len(cramjam.zstd.compress(sample, level=1)) < 0.8 * len(sample):
            return ZSTD, cramjam.zstd.compress(data, level=1)
    return RAW, data


def encode_state(state: Any) -> bytes:
    """`state` (an engine's `state_dict()`, or any picklable value) in the current format."""
    return freeze_state(state).encode()


@dataclass
class FrozenState:
    """A state pickled, its numpy buffers copied: it no longer changes with the objects it
    was taken from, so it can be compressed (`encode`) while they go on changing. The
    worker takes its engines' states so under its lock and compresses them beside the
    engines (streams/kafka/persistence.py)."""

    body: bytes
    buffers: list[bytes]

    def encode(self) -> bytes:
        return _pack([_squeeze(memoryview(self.body))] + [_squeeze(b) for b in self.buffers])


def freeze_state(state: Any) -> FrozenState:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(state, protocol=5, buffer_callback=buffers.append)
    return FrozenState(body, [bytes(b.raw()) for b in buffers])


def _pack(parts: list[tuple[int, bytes | memoryview]]) -> bytes:
    version = str(FORMAT_VERSION).encode()
    head = [_HEAD.pack(MAGIC + version, len(parts))] + [_PART.pack(f, len(d)) for f, d in parts]
    return b"".join([*head, *(d for _, d in parts)])


def decode_state(blob: bytes) -> Any:
    """The value `encode_state` was given, or, for the two older layouts, the pickled one.

    Only for the operator's own state files and the application's own changelog: like any
    pickle, a blob from elsewhere could run code when loaded.
    """
    if not blob:
        raise CheckpointFormatError("empty: not a Vigil checkpoint")
    if blob[:3] != MAGIC:
        return _decode_legacy(blob)
    if len(blob) < _HEAD.size:
        raise CheckpointFormatError(f"truncated: {len(blob)} bytes, shorter than the header")
    version = blob[3:4]
    if version not in READS:
        raise CheckpointFormatError(_version_problem(version))
    return _decode_parts(blob)


def _version_problem(version: bytes) -> str:
    if version.isdigit() and int(version) > FORMAT_VERSION:
        return (
            f"format version {int(version)} was written by a newer Vigil; this one reads "
            f"version {FORMAT_VERSION}"
        )
    return f"unknown format version {version!r}; this Vigil reads version {FORMAT_VERSION}"


def _decode_parts(blob: bytes) -> Any:
    _, n = _HEAD.unpack_from(blob)
    at = _HEAD.size + n * _PART.size
    if at > len(blob):
        raise CheckpointFormatError(
            f"truncated: {len(blob):,} bytes, its header alone names {n:,} parts"
        )
    sizes = [_PART.unpack_from(blob, _HEAD.size + i * _PART.size) for i in range(n)]
    expected = at + sum(size for _, size in sizes)
    if expected != len(blob):
        what = "truncated" if len(blob) < expected else "corrupt"
        raise CheckpointFormatError(
            f"{what}: {len(blob):,} bytes where the header names {expected:,}"
        )
    view = memoryview(blob)
    parts = []
    for i, (flag, size) in enumerate(sizes):
        data = view[at : at + size]
        at += size
        if flag not in (RAW, ZLIB, ZSTD):
            raise CheckpointFormatError(f"corrupt: part {i} has compression flag {flag}")
        try:
            # Writable copies: the engine updates its arrays in place.
            parts.append(bytearray(_inflate(flag, data)))
        except (zlib.error, cramjam.DecompressionError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointFormatError(f"corrupt: part {i} does not inflate ({problem})") from None
    if not parts:
        raise CheckpointFormatError("corrupt: the header names no parts")
    return _unpickle(parts[0], parts[1:])


def _inflate(flag: int, data: memoryview) -> Any:
    if flag == ZSTD:
        return cramjam.zstd.decompress(data)
    return zlib.decompress(data) if flag == ZLIB else data


def _decode_legacy(blob: bytes) -> Any:
    if blob[0] == _ZLIB_FIRST:  # the worker's checkpoints before out-of-band buffers
        try:
            body = zlib.decompress(blob)
        except zlib.error as exc:
            raise CheckpointFormatError(f"corrupt: an old deflated checkpoint ({exc})") from None
        return _unpickle(body, [])
    if blob[0] == _PICKLE_FIRST and len(blob) > 1 and 2 <= blob[1] <= 5:
        return _unpickle(blob, [])  # a state file written by replay or warm before the codec
    raise CheckpointFormatError(f"not a Vigil checkpoint (it starts with {bytes(blob[:8])!r})")


def _unpickle(body: bytes | bytearray, buffers: list[bytearray]) -> Any:
    try:
        return pickle.loads(body, buffers=buffers)  # noqa: S301 (see decode_state)
    except Exception as exc:  # a damaged pickle can fail in any of a dozen ways
        raise CheckpointFormatError(
            f"truncated or corrupt: the pickle does not load ({type(exc).__name__})"
        ) from None
