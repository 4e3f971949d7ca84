"""What exactly_once changes in the worker's settings, and where an orphan output goes."""

from __future__ import annotations

from streams.kafka.transactions import EXACTLY_ONCE, fallback_partition, table_settings


def test_exactly_once_keeps_state_in_memory_without_standbys():
    # A local store would keep writes of aborted transactions; a standby promoted while
    # an abort is under way stops the worker (docs/kafka.md, "exactly_once").
    assert table_settings(EXACTLY_ONCE) == {"store": "memory://", "table_standby_replicas": 0}
    assert table_settings("at_least_once") == {"store": "rocksdb://"}


def test_an_output_of_no_partition_joins_the_lowest_owned_one():
    assert fallback_partition({5, 2, 7}) == 2
    assert fallback_partition(iter([3])) == 3
    assert fallback_partition(set()) is None
