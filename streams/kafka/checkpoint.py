"""Engine state checkpoints stored in a plain Faust table, one entry set per partition.

A partition's checkpoint is its engine's `state_dict()` plus the next input offsets it
covers. The blob is split into chunks so no changelog record nears the broker's message
size limit. Chunks are keyed by a generation number and the manifest is written last, in
the same changelog partition, so a worker killed half way through leaves the previous
manifest pointing at complete chunks of the previous generation.
"""

from __future__ import annotations

import pickle
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.streams import _current_event

CHUNK_BYTES = 256 * 1024


@dataclass
class Manifest:
    generation: int
    chunks: int
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset covered
    size: int = 0

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @staticmethod
    def from_bytes(raw: bytes) -> Manifest:
        d = orjson.loads(raw)
        return Manifest(d["generation"], d["chunks"], dict(d["offsets"]), d.get("size", 0))


def encode_state(state: Any) -> bytes:
    # Level 1: state is mostly numbers and short strings; speed matters more than ratio.
    return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)


def decode_state(blob: bytes) -> Any:
    # The blob comes only from this application's own changelog topic.
    return pickle.loads(zlib.decompress(blob))  # noqa: S301


def manifest_key(partition: int) -> bytes:
    return f"p{partition}".encode()


def chunk_key(partition: int, generation: int, index: int) -> bytes:
    return f"p{partition}/g{generation}/c{index}".encode()


@dataclass
class _Msg:
    topic: str
    partition: int


@dataclass
class _PartitionEvent:
    message: _Msg


@contextmanager
def in_partition(topic: str, partition: int) -> Iterator[None]:
    """Lets a Faust table write to `partition` from outside an agent's stream.

    Faust routes table writes (store and changelog) to the partition of the event being
    processed. Batches arrive without per-record events, so a stand-in names the partition.
    """
    event = _PartitionEvent(_Msg(topic, partition))
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


def write(table: Any, source_topic: str, partition: int, state: Any, offsets: dict) -> int:
    """Writes one checkpoint for `partition`; returns the compressed size in bytes."""
    blob = encode_state(state)
    previous = read_manifest(table, source_topic, partition)
    generation = previous.generation + 1 if previous else 1
    chunks = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
    with in_partition(source_topic, partition):
        for i, chunk in enumerate(chunks):
            table[chunk_key(partition, generation, i)] = chunk
        table[manifest_key(partition)] = Manifest(
            generation, len(chunks), dict(offsets), len(blob)
        ).to_bytes()
        if previous:
            for i in range(previous.chunks):
                key = chunk_key(partition, previous.generation, i)
                if key in table:
                    del table[key]
    return len(blob)


def read_manifest(table: Any, source_topic: str, partition: int) -> Manifest | None:
    with in_partition(source_topic, partition):
        raw = table.get(manifest_key(partition))
    return Manifest.from_bytes(raw) if raw else None


def read(table: Any, source_topic: str, partition: int) -> tuple[Any, Manifest] | None:
    """The latest complete checkpoint of `partition`, or None when it has none."""
    manifest = read_manifest(table, source_topic, partition)
    if manifest is None:
        return None
    parts = []
    for i in range(manifest.chunks):
        with in_partition(source_topic, partition):
            chunk = table.get(chunk_key(partition, manifest.generation, i))
        if chunk is None:
            raise RuntimeError(
                f"checkpoint of partition {partition} generation {manifest.generation} "
                f"is missing chunk {i}; the changelog is incomplete"
            )
        parts.append(chunk)
    return decode_state(b"".join(parts)), manifest
