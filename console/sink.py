"""The alert store as a runner's sink: alerts and account snapshots, written per batch."""

from __future__ import annotations

from console.store import AlertStore
from streams.engine.engine import Output
from streams.engine.snapshots import materialise


class StoreSink:
    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def write(self, out: Output) -> None:
        if out.alerts:
            self.store.write_alerts([a.to_dict() for a in out.alerts])
        if out.snapshots:
            self.store.write_snapshots(materialise(out.snapshots))

    def close(self) -> None:
        self.store.close()
