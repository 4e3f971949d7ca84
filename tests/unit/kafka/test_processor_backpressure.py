"""The processor's input paused while its engines hold too much (streams/kafka/backpressure.py)."""

from __future__ import annotations

from faust.types import TP

from tests.unit.kafka.fakes import (
    IN,
    every_partition,
    make_processor,
    record_block,
    run_async,
)


def test_the_input_pauses_while_an_owned_engine_holds_too_many_windows():
    assignment = every_partition(2, (IN,))
    proc, _ = make_processor(assignment)

    async def scenario() -> None:
        proc.on_assigned(assignment)
        await proc.on_batch(TP(IN, 1), record_block(0, 1))
        proc.flow_control()
        assert not proc.app.consumer.paused
        proc.parts[1].engine.unscored_windows = proc.max_unscored + 1
        proc.flow_control()
        assert proc.app.consumer.paused == assignment  # every owned input, not one
        proc.parts[1].engine.unscored_windows = proc.max_unscored
        proc.flow_control()
        assert proc.app.consumer.paused == set()

    run_async(scenario())


def test_the_owned_engines_unscored_bytes_are_shown():
    assignment = every_partition(2, (IN,))
    proc, _ = make_processor(assignment)

    def shown() -> float | None:
        return proc.metrics.registry.get_sample_value("vigil_unscored_bytes")

    async def scenario() -> None:
        proc.on_assigned(assignment)
        for p in range(2):
            await proc.on_batch(TP(IN, p), record_block(0, 1))
            proc.parts[p].engine.unscored_bytes = 600 * (p + 1)
        proc.max_bytes = 1000
        proc.flow_control()
        assert shown() == 1800
        # Past the bound, but no source's lead is known yet: none is known to be ahead of
        # the slowest, so none pauses (to_pause's tests cover the leads).
        assert proc.app.consumer.paused == set()

    run_async(scenario())
