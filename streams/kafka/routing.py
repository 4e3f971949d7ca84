"""Which partition an account belongs to, and finding the account in a raw event cheaply.

Per-account state lives with the partition its account hashes to, by the partitioner the
input topic's producers are said to use (`[kafka] input_partitioner`): murmur2, the Java
client's default, which kafka-python and aiokafka share, or crc32, librdkafka's (kcat,
confluent-kafka and the other clients built on it). Records produced with another key, no
key, or another partitioner are forwarded to the owning partition of the repartition topic.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import numpy as np
import orjson
from aiokafka.partitioner import murmur2

from streams.contract import _decode
from streams.contract.reference import Reject, decode_event
from streams.kafka.block import Block, all_here

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Forwards:
    """The records of a Block for other partitions, grouped by owning partition and in
    their order within each: each one's owning partition, raw value and input offset."""

    owners: list[int]
    values: list[bytes]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.offsets)


# Forwarded records looked at before the worker says whether its producers use the other
# partitioner (OtherPartitioner), and the share of them that must fit it.
HINT_SAMPLE = 1_000
HINT_SHARE = 0.9
HINT_PER_BLOCK = 256  # a worker working off a backlog reads Blocks of up to 10,000


# Each partitioner by its config name, and the code `_decode.partitions` knows it by.
PARTITIONERS = {"murmur2": 0, "crc32": 1}


def partition_for(key: bytes, partitions: int, partitioner: str = "murmur2") -> int:
    """The partition of a keyed record: murmur2 as the Java client places it, or crc32 as
    librdkafka's default (consistent_random) places a record with a key."""
    if partitioner == "crc32":
        return zlib.crc32(key) % partitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Router:
    """Maps account ids to partitions with a cache; accounts repeat, hashing is slow."""

    def __init__(
        self,
        partitions: int,
        max_line_bytes: int | None = None,
        cache_limit: int = 1_000_000,
        partitioner: str = "murmur2",
    ) -> None:
        self.partitions = partitions
        self.partitioner = partitioner
        # Longer records stay where they are read: the engine dead-letters them as
        # too_large anyway, and the input topic may take records larger than the
        # repartition topic does, whose refusal failed the forwarded batch and the
        # checkpoint after it, again on every restart.
        line_limit = -1 if max_line_bytes is None else max_line_bytes  # -1: none
        # `_decode.partitions`'s arguments after the values: the consumer thread places
        # the input topic's records with these too (fetch.install), so both agree.
        self.placement = (partitions, PARTITIONERS[partitioner], line_limit)
        self._cache: dict[bytes, int] = {}
        self._limit = cache_limit
        self.hint = OtherPartitioner(partitions, partitioner)

    def owner(self, account: bytes) -> int:
        p = self._cache.get(account)
        if p is None:
            p = partition_for(account, self.partitions, self.partitioner)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[account] = p
        return p

    def split(self, block: Block, partition: int) -> tuple[Block, Forwards]:
        """Records that belong here, and those that do not.

        Anything whose account cannot be read, or longer than `max_line_bytes`, stays
        here, so the engine dead-letters it.
        The compiled decoder places the plain records by their top-level account_id; only
        the others (escapes, a repeated account_id, odd JSON) are parsed here. A full parse
        of each forwarded record cost a tenth of the main thread when most records were
        forwarded (docs/kafka.md, "Forwarding without a parse").
        """
        found = block.where  # worked out in the consumer thread (fetch.py), when it could
        if found is None or len(found) != 4 * len(block):
            found = _decode.partitions(block.values, *self.placement)
        if all_here(found, partition):
            return block, Forwards([], [], [])
        where = np.frombuffer(found, np.int32)
        # -1: no value, or too long, stays; -2: placed below, after a parse.
        rows = np.flatnonzero((where != partition) & (where != -1))
        values = block.values
        by = where[rows]
        if (by == -2).any():
            kept, owners = self._parsed(values, rows.tolist(), by.tolist(), partition)
            rows, by = np.asarray(kept, np.intp), np.asarray(owners, np.int32)
        if not self.hint.done:
            some = rows[:HINT_PER_BLOCK].tolist()
            self.hint.observe(partition, [block.keys[i] for i in some], accounts(values, some))
        stay = np.ones(len(block), bool)
        stay[rows] = False
        order = np.argsort(by, kind="stable")  # grouped by owner, in order within each
        grouped = rows[order].tolist()
        offsets = block.offsets
        foreign = Forwards(
            by[order].tolist(),
            [values[i] for i in grouped],  # type: ignore[misc]
            [offsets[i] for i in grouped],
        )
        return block.take(np.flatnonzero(stay).tolist()), foreign

    def _parsed(
        self, values: list, rows: list[int], owners: list[int], partition: int
    ) -> tuple[list[int], list[int]]:
        """`rows` and `owners` with the records the compiled decoder could not place (-2)
        placed by a full parse, or left here when it finds no account of another's."""
        kept_rows, kept_owners = [], []
        for i, w in zip(rows, owners, strict=True):
            if w == -2:
                account = account_of(values[i])
                if account is None or (w := self.owner(account)) == partition:
                    continue
            kept_rows.append(i)
            kept_owners.append(w)
        return kept_rows, kept_owners


class OtherPartitioner:
    """Notices a producer that keys records by account_id and places them by the other
    partitioner: every one of its records is forwarded, read twice and written once more,
    where telling the worker (`[kafka] input_partitioner`) would leave them where they
    are. Says so once, in a warning, after HINT_SAMPLE forwarded records, when most of
    them fit; the forwarding itself loses nothing either way."""

    def __init__(self, partitions: int, partitioner: str) -> None:
        self.partitions = partitions
        self.other = "crc32" if partitioner == "murmur2" else "murmur2"
        self.seen = self.fits = 0
        self.done = False

    def observe(self, partition: int, keys: list, accounts: list) -> None:
        for key, account in zip(keys, accounts, strict=True):
            self.seen += 1
            if (
                account is not None
                and key == account
                and partition_for(account, self.partitions, self.other) == partition
            ):
                self.fits += 1
        if self.seen < HINT_SAMPLE:
            return
        self.done = True
        if self.fits >= HINT_SHARE * self.seen:
            log.warning(
                "%d of %d forwarded events were keyed by their account_id and placed as the "
                '%s partitioner places them: set [kafka] input_partitioner = "%s" on every '
                "worker of the group to read them where they are (docs/kafka.md, Topics and "
                "records)",
                self.fits,
                self.seen,
                self.other,
                self.other,
            )


def accounts(values: list, rows: list[int]) -> list[bytes | None]:
    """The top-level account_id of each of `values[rows]`, as `account_of` reads it."""
    found = _decode.accounts(values, rows)
    return [a if a is not None else account_of(values[i]) for i, a in zip(rows, found, strict=True)]


def account_of(value: bytes | None) -> bytes | None:
    """The top-level account_id of a raw JSON event, as the decoder reads it (the last one
    if repeated), or None when it has none that we can read.

    A scan for the first `"account_id":"` would also find one nested in another field,
    or the first of two, and send the event to another account's partition.
    """
    if not value:
        return None
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson refuses a few lines the decoder takes (numbers out of its range in
        # unknown fields): ask the decoder itself.
        try:
            return decode_event(value).account_id.encode("utf-8", "surrogatepass")
        except Reject:
            return None
    acct = d.get("account_id") if type(d) is dict else None
    return acct.encode() if type(acct) is str and acct else None
