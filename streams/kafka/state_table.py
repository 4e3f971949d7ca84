"""The engine-state table: Faust's Table, with changelog sends a checkpoint can wait for.

A checkpoint commits input offsets only once the state it wrote is in the changelog
(persistence.py). The producer's flush does not say so: Faust's returns once its buffer
has made no progress for 0.1 s, which a 256 KiB chunk waiting for the partition's previous
batch can take, and aiokafka's waits for the batches it holds without reporting a failed
one. Each changelog send returns a future that resolves when the broker acknowledged the
record and fails when it did not; this table keeps them until the checkpoint takes them.
"""

from __future__ import annotations

from typing import Any

import faust


class StateTable(faust.Table):
    sent: list | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        if self.sent is None:
            self.sent = []
        self.sent.append(fut)
        return fut

    def take_sent(self) -> list:
        """The futures of the changelog records written since the last call."""
        sent, self.sent = self.sent or [], []
        return sent


def state_table(app: faust.App, name: str, partitions: int) -> StateTable:
    """Registers the table with the app as `app.Table` does, with bytes keys and values."""
    table = StateTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )
    return app.tables.add(table)
