"""Dead letters a sink makes on its own thread (the webhook's), sent to the dead-letter topic
from the event loop: the producer belongs to the loop, so the thread only hands them over."""

from __future__ import annotations

from collections import deque
from typing import Any

from faust.types import TP

from streams.contract.reference import DeadLetter
from streams.core.config import VigilConfig


class HeldDeadLetters:
    def __init__(self) -> None:
        self._held: deque[DeadLetter] = deque()  # append and popleft are thread-safe

    def put(self, dl: DeadLetter) -> None:
        """From any thread."""
        self._held.append(dl)

    async def send(self, processor: Any) -> int:
        """Enqueue them on the dead-letter topic; delivered and checked at the next checkpoint
        like every other output. Their source is the alerts topic, at partition -1: an alert,
        not an input record."""
        sent = 0
        source = TP(processor.topics.alerts, -1)
        while self._held:
            dl = self._held.popleft()
            await processor._dead_letter(
                dl.raw, dl.reason, dl.detail, source, [("vigil-sink", b"webhook")]
            )
            sent += 1
        return sent


def alert_sinks(config: VigilConfig, metrics: Any, held: HeldDeadLetters) -> list:
    """The worker's sinks beyond its topics: the webhook, when configured."""
    if not config.webhook.url:
        return []
    from streams.runtime.webhook import WebhookSink

    return [WebhookSink(config.webhook, metrics.webhook, held.put)]
