"""Kafka log segment files as a broker writes them, for tests that corrupt one on disk."""

from __future__ import annotations

import struct
from pathlib import Path

# kcat's producer may send the first line it reads on its own, before the rest are queued
# (seen in about one run in four on a loaded machine): a run then makes two batches, and
# a test that corrupts "the middle run's batch" corrupts one record. Holding each batch
# up to a second makes every run one batch; kcat flushes at the end of its input anyway.
ONE_BATCH = ["-X", "linger.ms=1000"]


def batches(raw: bytes) -> list[tuple[int, int, int]]:
    """(base offset, position in the file, length) of each record batch of a segment."""
    out, pos = [], 0
    while pos + 12 <= len(raw):
        base, length = struct.unpack_from(">qi", raw, pos)
        out.append((base, pos, 12 + length))
        pos += 12 + length
    return out


def records_in(raw: bytes, base: int) -> int:
    """How many records the batch at `base` covers (lastOffsetDelta + 1)."""
    for b, pos, _ in batches(raw):
        if b == base:
            return struct.unpack_from(">i", raw, pos + 23)[0] + 1
    raise LookupError(f"no batch at offset {base}")


def flip_last_record_byte(segment: Path, batch: tuple[int, int, int]) -> None:
    """Flips a byte of the batch's last record: the batch's CRC no longer holds."""
    _, pos, length = batch
    with segment.open("r+b") as f:
        f.seek(pos + length - 3)
        byte = f.read(1)
        f.seek(pos + length - 3)
        f.write(bytes([byte[0] ^ 0x5A]))
