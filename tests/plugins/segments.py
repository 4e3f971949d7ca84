"""Kafka log segment files as a broker writes them, for tests that corrupt one on disk."""

from __future__ import annotations

import struct
from pathlib import Path


def batches(raw: bytes) -> list[tuple[int, int, int]]:
    """(base offset, position in the file, length) of each record batch of a segment."""
    out, pos = [], 0
    while pos + 12 <= len(raw):
        base, length = struct.unpack_from(">qi", raw, pos)
        out.append((base, pos, 12 + length))
        pos += 12 + length
    return out


def flip_last_record_byte(segment: Path, batch: tuple[int, int, int]) -> None:
    """Flips a byte of the batch's last record: the batch's CRC no longer holds."""
    _, pos, length = batch
    with segment.open("r+b") as f:
        f.seek(pos + length - 3)
        byte = f.read(1)
        f.seek(pos + length - 3)
        f.write(bytes([byte[0] ^ 0x5A]))
