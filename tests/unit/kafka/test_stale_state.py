"""Reading Faust's RocksDB offsets, and which partitions count as ahead of the changelog."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.types import TP

from streams.kafka.stale_state import persisted_offset, stale_partitions


def test_stale_partitions_compares_with_the_end_offset():
    ends = {0: 10, 1: 10, 2: 0, 3: 5}
    local = {0: 9, 1: 10, 2: 0, 3: None}
    # 9 < 10 is consistent; 10 is past the last record; any offset beats an empty changelog.
    assert stale_partitions(local, ends) == [1, 2]
    assert stale_partitions({4: 3}, ends) == [4]  # a changelog partition that is gone


def test_reads_the_offset_faust_persisted(tmp_path: Path):
    # Pins Faust's on-disk format: one RocksDB directory per partition, with the last applied
    # changelog offset under the store's offset_key, readable while Faust is not running.
    app = faust.App("stale-state-test", datadir=str(tmp_path), store="rocksdb://")
    table = app.Table("engine-state", default=None, partitions=2, key_type=bytes, value_type=bytes)
    store = table.data
    store.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), 1), 42)
    path = store.partition_path(1)
    for db in list(store._dbs.values()):  # the test closes what it opened
        db.close()
    assert path.is_dir()
    assert persisted_offset(path, store.offset_key) == 42
    assert not store.partition_path(0).exists()


def _table(tmp_path: Path, written: tuple[int, ...]) -> faust.Table:
    """A Faust RocksDB table under tmp_path with a record in each partition of `written`."""
    from streams.kafka.internals import in_partition

    app = faust.App("crash-test", datadir=str(tmp_path), store="rocksdb://")
    table = app.Table("engine-state", default=None, partitions=4, key_type=bytes, value_type=bytes)
    for p in written:
        with in_partition("t-usage", p):
            table.data[b"p%d" % p] = b"manifest"  # the store alone: no producer here
    for db in list(table.data._dbs.values()):
        db.close()
    return table


def test_local_state_is_discarded_after_a_crash_and_kept_after_a_clean_stop(tmp_path: Path):
    from prometheus_client import CollectorRegistry, Counter

    from streams.kafka.stale_state import clean_stop_marker, discard_after_crash, mark_clean_stop

    counter = Counter("discarded", "test", registry=CollectorRegistry())
    table = _table(tmp_path, (0, 2))
    paths = [table.data.partition_path(p) for p in range(4)]
    assert [p.is_dir() for p in paths] == [True, False, True, False]

    # A clean stop: kept, and the marker is gone, so that a crash of this run leaves none.
    mark_clean_stop(table)
    assert clean_stop_marker(table).is_file()
    assert discard_after_crash(table, 4, counter) == []
    assert [p.is_dir() for p in paths] == [True, False, True, False]
    assert not clean_stop_marker(table).exists()

    # No marker: the last run did not stop cleanly, and every local partition goes.
    assert discard_after_crash(table, 4, counter) == [0, 2]
    assert not any(p.exists() for p in paths) and counter._value.get() == 2
    assert discard_after_crash(table, 4, counter) == []  # nothing left to discard


def test_a_data_dir_is_held_by_one_worker_at_a_time(tmp_path: Path):
    import os

    import pytest

    from streams.kafka.stale_state import hold_data_dir

    data = tmp_path / "data"
    held = hold_data_dir(data)
    with pytest.raises(ValueError) as err:
        hold_data_dir(data)  # another open file: flock refuses it as it would another process
    message = str(err.value)
    assert "\n" not in message and str(data) in message and f"pid {os.getpid()}" in message
    held.close()  # the process's exit does the same
    hold_data_dir(data).close()
