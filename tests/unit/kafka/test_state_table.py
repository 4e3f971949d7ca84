"""The state table hands a checkpoint the futures of its changelog records."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import faust

from streams.kafka.internals import in_partition
from streams.kafka.state_table import StateTable, state_table


def test_every_write_and_delete_of_the_table_gives_a_future_to_wait_for():
    async def scenario() -> None:
        app = faust.App("state-table-test", broker="kafka://localhost:1", store="memory://")
        table = state_table(app, "engine-state", 4)
        assert isinstance(table, StateTable) and app.tables["engine-state"] is table
        assert table.take_sent() == []
        with in_partition("t-usage", 2):
            table[b"p2/g1/c0"] = b"chunk"
            table[b"p2"] = b"manifest"
            del table[b"p2/g1/c0"]
        sent = table.take_sent()
        # Faust's own write path goes through send_changelog: one record each, to the
        # partition written, and not acknowledged yet (no broker here).
        assert len(sent) == 3 and not any(f.done() for f in sent)
        assert [f.message.partition for f in sent] == [2, 2, 2]
        assert [f.message.value for f in sent] == [b"chunk", b"manifest", None]
        assert table.take_sent() == []

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()
