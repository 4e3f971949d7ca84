"""Engine memory counted in bytes, and what the engine does when a byte budget is reached.

The engine's state has three parts that grow with traffic:

- accounts: the AccountTable's arrays and the detectors' per-slot arrays (both sized by the
  table's capacity, not by the accounts held), plus, per held account, its id string and
  the Python objects that index it;
- open windows: the events buffered until the watermark closes their window, as numpy
  columns plus the raw line of each (kept for dead letters, snapshots and new account ids);
- the rest: the two generations of event ids kept for deduplication and the campaign
  indexes, which are bounded by their own horizons and key limits.

Policy when `engine.state_budget_bytes` is reached (see README, "Memory"):

1. Open windows get at most a quarter of the budget. Past that, the oldest open window is
   closed early, as if the watermark had passed it; its late events then go to dead
   letters as `too_late`, so nothing is lost without being counted.
2. The dedup ids get an eighth. Past that, their generations turn over early: ids are then
   remembered for less than `engine.dedup_horizon_s`, and each early turn is counted.
3. The campaign indexes keep at most an eighth of the budget's worth of keys (fewer than
   `engine.campaign_max_keys` when the budget is small); past that, their oldest keys go.
4. Accounts get the half left. A window with more accounts than half the slots that
   allows (a flood of new ones) is scored in parts by account, each part's accounts then
   evictable before the next part; such windows are counted. Before a window is featurised, the idlest accounts not in that
   window are evicted until the window's new accounts fit, in slots and in bytes; the
   table's capacity (and with it the detectors' arrays) never grows past what the budget
   allows.

Eviction is by idleness (oldest `last_seen` first), the same order the TTL eviction uses,
and every account evicted for the budget is counted in a metric and the replay summary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.contract.events import EventBatch
from streams.features.state import AccountTable

# Bytes per held account outside the numpy arrays, besides its id string: the index dict's
# entry with its int key and slot value (the lists' places are counted with the arrays).
# 84 bytes measured with tracemalloc over 100k accounts, rounded up for the dict's growth
# steps; tests/test_budget.py checks the total with the ids within 15%.
PY_ACCOUNT_BYTES = 100
# Bytes a raw line costs beyond its length (the bytes object's header and its pointer in
# the object array of the batch).
RAW_OVERHEAD = sys.getsizeof(b"") + 8
OPEN_WINDOW_SHARE = 0.25
DEDUP_SHARE = 0.125
# The campaign indexes' keys are capped so that, full, they take at most this share.
CAMPAIGN_SHARE = 0.125
TYPICAL_ID_BYTES = 64  # a str object holding a 15-character id
# Campaign index costs, per key (a dict of members plus the key's int) and per member
# entry (the id string is the table's own object, so only the entry and its float).
CAMPAIGN_KEY_BYTES = 300
CAMPAIGN_MEMBER_BYTES = 110
MIN_CAPACITY = 1024


def batch_bytes(batch: EventBatch) -> int:
    """Bytes an event batch holds: its columns and its raw lines."""
    cols = sum(getattr(batch, c).nbytes for c in batch.__dataclass_fields__ if c != "raw")
    raw = batch.raw
    return cols + len(raw) * (8 + RAW_OVERHEAD) + batch.raw_bytes()


def array_bytes(obj: Any, depth: int = 2) -> int:
    """Bytes of the numpy arrays an object holds in its attributes, `depth` objects deep.

    Detectors keep per-account state as arrays indexed by slot (the baseline's series);
    counting them this way needs nothing from the detector beyond plain attributes.
    """
    seen: set[int] = set()

    def walk(o: Any, d: int) -> int:
        if id(o) in seen:
            return 0
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            return o.nbytes
        if d == 0:
            return 0
        if isinstance(o, dict):
            return sum(walk(v, d - 1) for v in o.values())
        attrs = getattr(o, "__dict__", None)
        return sum(walk(v, d - 1) for v in attrs.values()) if isinstance(attrs, dict) else 0

    return walk(obj, depth + 1 if isinstance(obj, dict) else depth)


def idset_bytes_after(ids: Any, extra: int) -> int:
    """Bytes of an id set's table once `extra` more ids are added (as IdSet.reserve grows
    it: to four times what it holds, in powers of two, when it would pass half full)."""
    need = ids.count + extra
    if 2 * need <= len(ids.table):
        return ids.table.nbytes
    return max(len(ids.table), 1 << (4 * need - 1).bit_length()) * ids.table.itemsize


def table_array_bytes(table: AccountTable) -> int:
    """The table's arrays and its per-slot lists (8 bytes a place), by capacity."""
    arrays = sum(a.nbytes for a in table.arrays.values())
    return arrays + 8 * (len(table.ids) + len(table.codes) + len(table.free))


def table_held_bytes(table: AccountTable) -> int:
    """What the held accounts cost beyond the arrays: ids and index entries."""
    return len(table) * PY_ACCOUNT_BYTES + table.id_bytes


def campaign_bytes(campaign: Any, members: int) -> int:
    """The campaign indexes' bytes; `members` is counted hourly, and at least one member
    per key is counted in between."""
    keys = sum(len(idx.members) for idx in campaign.index.values())
    names = sum(len(idx.names) for idx in campaign.index.values())
    return (keys + names) * CAMPAIGN_KEY_BYTES + max(members, keys) * CAMPAIGN_MEMBER_BYTES


def campaign_members(campaign: Any) -> int:
    """Members of every campaign index (a walk over every key: called now and then)."""
    return sum(len(m) for idx in campaign.index.values() for m in idx.members.values())


@dataclass
class Usage:
    """Bytes of each part of an engine's state at one moment."""

    account_arrays: int = 0
    account_held: int = 0
    open_windows: int = 0
    dedup: int = 0
    campaign: int = 0

    @property
    def accounts(self) -> int:
        return self.account_arrays + self.account_held

    @property
    def total(self) -> int:
        return self.accounts + self.open_windows + self.dedup + self.campaign


class StateBudget:
    """Splits `engine.state_budget_bytes` into fixed shares and turns them into limits.

    Fixed shares keep each part's bound simple to state and to check: open windows a
    quarter, the dedup ids an eighth, the campaign indexes an eighth, accounts the half
    left."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = int(budget_bytes)
        self.open_budget = int(budget_bytes * OPEN_WINDOW_SHARE)
        self.dedup_budget = int(budget_bytes * DEDUP_SHARE)
        self.campaign_budget = int(budget_bytes * CAMPAIGN_SHARE)
        self.account_budget = (
            self.budget - self.open_budget - self.dedup_budget - self.campaign_budget
        )

    def max_capacity(self, slot_bytes: float) -> int:
        """Most table slots the accounts' share allows, with room for each account's id
        and index entries.

        The arrays cannot shrink, so this is what the table may grow to, not what it holds.
        `slot_bytes` is what one slot costs in the table's and the detectors' arrays.
        """
        per_account = slot_bytes + PY_ACCOUNT_BYTES + TYPICAL_ID_BYTES
        return max(MIN_CAPACITY, int(self.account_budget // per_account))

    def accounts_to_evict(self, usage: Usage, held: int, new: int, capacity_limit: int) -> int:
        """How many held accounts to evict so that `new` more fit, in slots and in bytes."""
        by_slots = held + new - capacity_limit
        # The new accounts' bytes, counted as typical ones until their ids are read.
        over = usage.accounts + new * (PY_ACCOUNT_BYTES + TYPICAL_ID_BYTES) - self.account_budget
        by_bytes = 0
        if held and over > 0:  # long ids: evicting frees their strings, not the arrays
            by_bytes = min(held, int(np.ceil(over / max(usage.account_held / held, 1.0))))
        return max(0, by_slots, by_bytes)

    def campaign_max_keys(self, configured: int, kinds: int) -> int:
        """Keys per campaign index such that all `kinds` of them fit their share."""
        per_key = CAMPAIGN_KEY_BYTES + CAMPAIGN_MEMBER_BYTES
        return max(1, min(configured, int(self.campaign_budget / (kinds * per_key))))

    def open_windows_over(self, open_bytes: int) -> bool:
        return open_bytes > self.open_budget

    def dedup_over(self, dedup_bytes: int) -> bool:
        return dedup_bytes > self.dedup_budget


def measure(
    table: AccountTable,
    detector_bytes: int,
    open_bytes: int,
    seen_ids: tuple[Any, ...],
    campaign: Any,
    members: int,
) -> Usage:
    """Bytes of each part of an engine's state."""
    return Usage(
        account_arrays=table_array_bytes(table) + detector_bytes,
        account_held=table_held_bytes(table),
        open_windows=open_bytes,
        dedup=sum(ids.table.nbytes for ids in seen_ids),
        campaign=campaign_bytes(campaign, members),
    )


def slots_to_evict(
    budget: StateBudget, table: AccountTable, account_codes: np.ndarray, usage: Usage
) -> np.ndarray:
    """Slots to evict before a window with these account codes is featurised, idlest first
    and never one of the window's own accounts; sets the table's growth limit."""
    table.max_capacity = budget.max_capacity(usage.account_arrays / max(table.capacity, 1))
    if budget.accounts_to_evict(usage, len(table), len(account_codes), table.max_capacity) == 0:
        return np.empty(0, dtype=np.int64)  # fits even if every event were a new account
    codes = np.unique(account_codes)
    get = table.index.get
    held = [s for s in map(get, codes.tolist()) if s is not None]
    n = budget.accounts_to_evict(usage, len(table), len(codes) - len(held), table.max_capacity)
    return idlest(table, n, np.asarray(held, dtype=np.int64))


def account_parts(account_codes: np.ndarray, limit: int) -> list[np.ndarray] | None:
    """Rows of a window in parts of at most `limit` accounts each, or None when it fits.

    Accounts are assigned to parts by code, so the split is the same in every replay."""
    if len(account_codes) <= limit:
        return None
    uniq, inv = np.unique(account_codes, return_inverse=True)
    if len(uniq) <= limit:
        return None
    part = inv // max(limit, 1)
    order = np.argsort(part, kind="stable")
    cuts = np.flatnonzero(np.diff(part[order])) + 1
    return np.split(order, cuts)


def report(metrics: Any, usage: Usage, held: int) -> None:
    """The budget's gauges: accounts held, bytes per account, bytes by part."""
    metrics.active_accounts.set(held)
    metrics.account_bytes.set(usage.accounts / max(held, 1))
    metrics.open_window_bytes.set(usage.open_windows)
    parts = {
        "accounts": usage.accounts,
        "open_windows": usage.open_windows,
        "dedup": usage.dedup,
        "campaign": usage.campaign,
    }
    for part, value in parts.items():
        metrics.state_bytes.labels(part).set(value)


def idlest(table: AccountTable, n: int, keep: np.ndarray) -> np.ndarray:
    """Slots of the `n` held accounts seen longest ago, leaving out the slots in `keep`."""
    if n <= 0:  # the usual case: no walk over every account held
        return np.empty(0, dtype=np.int64)
    held = np.fromiter(table.index.values(), dtype=np.int64, count=len(table.index))
    if len(keep):
        held = held[~np.isin(held, keep)]
    if len(held) == 0:
        return held
    if n >= len(held):
        return held
    # Never-scored slots have NaN last_seen: treat them as the idlest.
    last = np.nan_to_num(table.last_seen[held], nan=-np.inf)
    part = np.argpartition(last, n - 1)[:n]
    return held[part]
