"""Engine state checkpoints stored in a plain Faust table, one entry set per partition.

A partition's checkpoint is its engine's `state_dict()` plus the next input offsets it
covers. The blob is split into chunks so no changelog record nears the broker's message
size limit. Chunks are keyed by a generation number and the manifest is written last, in
the same changelog partition, so a worker killed half way through leaves the previous
manifest pointing at complete chunks of the previous generation.

Three kinds of segment ride along, each written once and named by the manifest until it
is no longer needed: journal segments (the open windows' raw events, until their windows
are scored), id segments (event ids the engine deduplicates against, until their
generation is forgotten, streams/engine/dedup.py) and held segments (the windows held for
campaign figures, streams/engine/exchange.py, until they are scored). A held window does
not change until it is scored, and it was three quarters of a state blob's bytes: under
exactly_once, where a checkpoint comes every second while windows are held, each was
written again at every checkpoint, three to six times (docs/kafka.md, "Held windows
written once"). The state blob keeps their ends, in order; `read` puts them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from streams.kafka.internals import in_partition

# The blob format is the one `replay --state` and `warm` write too (the processor calls
# encode_state through this module).
from streams.runtime.checkpoint_codec import FrozenState, decode_state, encode_state, freeze_state

CHUNK_BYTES = 256 * 1024


@dataclass
class Manifest:
    generation: int
    chunks: int
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset covered
    size: int = 0
    # Journal segments holding the open windows' events: [id, chunks, newest event time].
    segments: list[list] = field(default_factory=list)
    # Id segments: [name, chunks, dedup generation].
    seen: list[list] = field(default_factory=list)
    # Held segments: [name, chunks, ends of the held windows it stores].
    held: list[list] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @staticmethod
    def from_bytes(raw: bytes) -> Manifest:
        d = orjson.loads(raw)
        return Manifest(
            d["generation"],
            d["chunks"],
            dict(d["offsets"]),
            d.get("size", 0),
            [list(x) for x in d.get("segments", [])],
            [list(x) for x in d.get("seen", [])],
            [list(x) for x in d.get("held", [])],
        )


@dataclass
class HeldWindows:
    """The windows an engine holds for campaign figures at a checkpoint (`split_held`)."""

    ends: list[float]  # every held window's end, oldest first
    new: list  # those no held segment of the previous checkpoint stores
    # The new ones pickled as they were when taken: an engine fills a held window's
    # campaign columns in place when it completes it, which it may do while `encode` runs.
    frozen: FrozenState | None = None
    blob: bytes = b""  # the new ones' segment blob (`encode`); b"" when none are new

    def encode(self) -> None:
        """Sets `blob`; in the encoder's threads, like the journal (compression releases
        the GIL)."""
        self.blob = self.frozen.encode() if self.frozen is not None else b""


def encode_journal(lines: list[bytes]) -> bytes:
    """A journal segment's blob, in the state's format; empty when there is no segment."""
    return _segment_blob(lines)


def _segment_blob(items: list) -> bytes:
    return encode_state(items) if items else b""


def manifest_key(partition: int) -> bytes:
    return f"p{partition}".encode()


def chunk_key(partition: int, generation: int, index: int) -> bytes:
    return f"p{partition}/g{generation}/c{index}".encode()


def segment_key(partition: int, segment: int, index: int) -> bytes:
    return f"p{partition}/s{segment}/c{index}".encode()


def seen_key(partition: int, name: str, index: int) -> bytes:
    return f"p{partition}/i{name}/c{index}".encode()


def held_key(partition: int, name: int, index: int) -> bytes:
    return f"p{partition}/h{name}/c{index}".encode()


def split_held(table: Any, source_topic: str, partition: int, state: dict) -> HeldWindows:
    """Takes the held windows out of `state` (an engine's `state_dict(pending=False)`),
    leaving their ends; returns them with those not stored yet, which `write` puts in a new
    held segment. Call it before encoding `state`."""
    ex = state.get("exchange")
    if not ex or not ex["held"]:
        return HeldWindows([], [])
    previous = read_manifest(table, source_topic, partition)
    stored = {end for _, _, ends in previous.held for end in ends} if previous else set()
    held, ex["held"] = ex["held"], []
    ex["held_ends"] = [h.end for h in held]
    new = [h for h in held if h.end not in stored]
    return HeldWindows(ex["held_ends"], new, freeze_state(new) if new else None)


def encode_seen(segments: list) -> list[tuple[int, bytes, bool]]:
    """(generation, blob, whole) of each (generation, ids, whole) from `take_seen`."""
    return [(gen, ids.astype("<u8").tobytes(), whole) for gen, ids, whole in segments]


def _chunks(blob: bytes) -> list[bytes]:
    return [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]


def write(
    table: Any,
    source_topic: str,
    partition: int,
    blob: bytes,
    offsets: dict,
    journal: bytes = b"",
    journal_newest: float = float("-inf"),
    floor: float = float("-inf"),
    seen: Sequence[tuple[int, bytes, bool]] = (),
    seen_from: int | None = None,
    held: HeldWindows | None = None,
) -> int:
    """Writes one checkpoint for `partition`; returns the bytes written.

    `blob` is the `encode_state` of the engine without its open events; `journal`, their
    `encode_journal` since the previous checkpoint, becomes a new segment. Segments whose
    newest event is before `floor` (the engine's `journal_floor`) hold only scored windows
    and are dropped. `seen` (`encode_seen`) become id segments; a whole one replaces the
    earlier segments of its generation, and those of generations before `seen_from` are
    dropped. `held` (`split_held`, its blob encoded): its new windows become a held
    segment; held segments none of whose windows are still held are dropped.
    """
    previous = read_manifest(table, source_topic, partition)
    generation = previous.generation + 1 if previous else 1
    old_segments = previous.segments if previous else []
    live = [s for s in old_segments if s[2] >= floor]
    old_seen = previous.seen if previous else []
    live_seen = [s for s in old_seen if seen_from is None or s[2] >= seen_from]
    old_held = previous.held if previous else []
    now = set(held.ends) if held else set()
    live_held = [s for s in old_held if now.intersection(s[2])]
    with in_partition(source_topic, partition):
        chunks = _put_chunks(table, chunk_key, partition, generation, blob)
        if journal:
            n = _put_chunks(table, segment_key, partition, generation, journal)
            live.append([generation, n, journal_newest])
        for gen, ids, whole in seen:
            if whole:
                live_seen = [s for s in live_seen if s[2] != gen]
            name = f"{generation}.{gen}"
            live_seen.append([name, _put_chunks(table, seen_key, partition, name, ids), gen])
        if held and held.blob:
            n = _put_chunks(table, held_key, partition, generation, held.blob)
            live_held.append([generation, n, [h.end for h in held.new]])
        table[manifest_key(partition)] = Manifest(
            generation, chunks, dict(offsets), len(blob), live, live_seen, live_held
        ).to_bytes()
        if previous:
            _delete_chunks(table, chunk_key, partition, previous.generation, previous.chunks)
        _delete_segments(table, segment_key, partition, old_segments, live)
        _delete_segments(table, seen_key, partition, old_seen, live_seen)
        _delete_segments(table, held_key, partition, old_held, live_held)
    held_bytes = len(held.blob) if held else 0
    return len(blob) + len(journal) + sum(len(ids) for _, ids, _ in seen) + held_bytes


class UnusableCheckpoint(Exception):
    """A partition's checkpoint cannot be used; the message is one line and says what to do.
    It stops the worker (consumer.BatchConsumer.drain): a restart cannot read it either."""


def discard(table: Any, source_topic: str, partition: int) -> None:
    """Removes a partition's checkpoint, so that the next `write` starts a new one rather
    than keep its journal segments. Chunks of a manifest that cannot be read stay behind,
    named by no manifest."""
    try:
        manifest = read_manifest(table, source_topic, partition)
    except Exception:  # noqa: BLE001 - unreadable: nothing to find its chunks by
        manifest = None
    with in_partition(source_topic, partition):
        if manifest is not None:
            for key in sorted(_named_keys(partition, manifest)):
                _delete(table, key)
        _delete(table, manifest_key(partition))


def sweep(table: Any, source_topic: str, partition: int, manifest: Manifest | None) -> int:
    """Deletes the keys of `partition` that `manifest` does not name; returns how many.

    `write` puts the new chunks, then the manifest, then deletes what the previous one
    named. Under at_least_once a worker killed in between leaves in the changelog what it
    had sent: chunks of the previous generation, or of one whose manifest never arrived,
    which no manifest names and nothing would delete. Under exactly_once the transaction
    is aborted whole, so there are none."""
    prefix = f"p{partition}/".encode()
    named = _named_keys(partition, manifest) if manifest is not None else set()
    with in_partition(source_topic, partition):
        stray = [k for k in list(table.keys()) if k.startswith(prefix) and k not in named]
        for key in stray:
            del table[key]
    return len(stray)


def _named_keys(partition: int, m: Manifest) -> set[bytes]:
    """Every chunk key `m` names: its state's, and each journal, seen and held segment's."""
    named = {chunk_key(partition, m.generation, i) for i in range(m.chunks)}
    for key, segments in ((segment_key, m.segments), (seen_key, m.seen), (held_key, m.held)):
        named.update(key(partition, name, i) for name, n, *_ in segments for i in range(n))
    return named


def _delete(table: Any, key: bytes) -> None:
    if key in table:
        del table[key]


def _put_chunks(table: Any, key, partition: int, ident, blob: bytes) -> int:
    """Stores `blob` in chunks named as `_read_chunks` reads them; returns how many."""
    chunks = _chunks(blob)
    for i, chunk in enumerate(chunks):
        table[key(partition, ident, i)] = chunk
    return len(chunks)


def _delete_segments(table: Any, key, partition: int, segments: list, kept: Sequence) -> None:
    """The chunks of each segment ([name, chunks, ...]) that `kept` does not name too."""
    names = {s[0] for s in kept}
    for name, n, *_ in segments:
        if name not in names:
            _delete_chunks(table, key, partition, name, n)


def _delete_chunks(table: Any, key, partition: int, ident, n: int) -> None:
    """The n chunks of one state blob or segment, as `_read_chunks` names them."""
    for i in range(n):
        _delete(table, key(partition, ident, i))


def read_manifest(table: Any, source_topic: str, partition: int) -> Manifest | None:
    with in_partition(source_topic, partition):
        raw = table.get(manifest_key(partition))
    return Manifest.from_bytes(raw) if raw else None


def read(table: Any, source_topic: str, partition: int) -> tuple[Any, Manifest, list] | None:
    """The latest complete checkpoint of `partition` (state, manifest, journal lines of its
    open windows), or None when it has none."""
    manifest = read_manifest(table, source_topic, partition)
    if manifest is None:
        return None
    blob = _read_chunks(
        table, source_topic, partition, manifest, chunk_key, manifest.generation, manifest.chunks
    )
    state = decode_state(blob)
    ex = state.get("exchange") if isinstance(state, dict) else None
    if ex is not None and "held_ends" in ex:  # held windows in held segments: split_held
        ex["held"] = _held_windows(table, source_topic, partition, manifest, ex.pop("held_ends"))
    lines: list[bytes] = []
    for seg, n, _ in manifest.segments:
        blob = _read_chunks(table, source_topic, partition, manifest, segment_key, seg, n)
        lines += decode_state(blob)
    return state, manifest, lines


def _held_windows(
    table: Any, source_topic: str, partition: int, manifest: Manifest, ends: list[float]
) -> list:
    stored = {}
    for name, n, _ in manifest.held:
        blob = _read_chunks(table, source_topic, partition, manifest, held_key, name, n)
        stored.update((h.end, h) for h in decode_state(blob))
    missing = [end for end in ends if end not in stored]
    if missing:
        raise RuntimeError(
            f"checkpoint of partition {partition} generation {manifest.generation} holds "
            f"{len(missing)} window(s) waiting for campaign figures that no held segment "
            "stores; the changelog is incomplete"
        )
    return [stored[end] for end in ends]


def read_seen(
    table: Any, source_topic: str, partition: int, manifest: Manifest
) -> list[tuple[int, np.ndarray]]:
    """(dedup generation, event id codes) of each id segment the manifest names."""
    out = []
    for name, n, gen in manifest.seen:
        blob = _read_chunks(table, source_topic, partition, manifest, seen_key, name, n)
        out.append((gen, np.frombuffer(blob, "<u8").astype(np.uint64)))
    return out


def _read_chunks(
    table: Any, source_topic: str, partition: int, manifest: Manifest, key, ident, n: int
) -> bytes:
    parts = []
    for i in range(n):
        with in_partition(source_topic, partition):
            chunk = table.get(key(partition, ident, i))
        if chunk is None:
            raise RuntimeError(
                f"checkpoint of partition {partition} generation {manifest.generation} "
                f"is missing {key(partition, ident, i).decode()}; the changelog is incomplete"
            )
        parts.append(chunk)
    return b"".join(parts)
