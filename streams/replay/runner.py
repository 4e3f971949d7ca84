"""`vigil replay`: drive the engine over a file, hand its output to the sinks, checkpoint."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from streams.core.config import VigilConfig
from streams.engine.engine import Engine, Output, SnoozeSource
from streams.engine.metrics import Metrics
from streams.engine.shadow import Shadow
from streams.replay.pacing import Pacer
from streams.replay.reader import ReplaySummary, UnreadableInput, open_input, replay
from streams.replay.warm import load_state, reset, save_state
from streams.runtime.sinks import Sink


@dataclass
class ReplayJob:
    """Everything one replay needs, already checked by the command line."""

    config: VigilConfig
    path: str
    sinks: list[Sink] = field(default_factory=list)
    metrics_port: int | None = None
    hold: bool = False
    state_path: Path | None = None
    snoozes: SnoozeSource | None = None
    snapshots: bool = False  # build account snapshots (a sink wants them)
    detectors: dict | None = None
    pacer: Pacer | None = None  # None: as fast as possible
    metrics: Metrics | None = None  # given when a sink (a webhook) reports on it too
    # A challenger beside the model; its alerts go to Output.shadow_alerts only.
    shadow: Shadow | None = None
    on_features: Callable | None = None  # called with each window's FeatureBatch
    reset: tuple[str, ...] = ()  # detectors that start empty though the state holds them
    before_window: Any = None  # streams/replay/control.py: control records at event time


def run_replay(job: ReplayJob, echo: Callable[[str], None] = typer.echo) -> ReplaySummary:
    metrics = job.metrics or Metrics()
    engine = Engine(
        job.config,
        metrics,
        detectors=job.detectors,
        snoozes=job.snoozes,
        emit_snapshots=job.snapshots,
        shadow=job.shadow,
        on_features=job.on_features,
    )
    engine.before_window = job.before_window
    if job.state_path and job.state_path.exists():
        state = load_state(job.state_path)
        if job.reset:
            state = reset(state, list(job.reset))
        engine.load_state_dict(state)
        again = f" ({', '.join(job.reset)} reset)" if job.reset else ""
        typer.echo(f"resumed engine state from {job.state_path}{again}", err=True)
    if job.metrics_port is not None:
        # Once the engine is built and its state loaded, so the first scrape sees them.
        metrics.serve(job.metrics_port)
        typer.echo(f"serving metrics on http://127.0.0.1:{job.metrics_port}/metrics", err=True)

    def sink(out: Output) -> None:
        for s in job.sinks:
            s.write(out)

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with (
        open_input(job.path) as fh,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,} events"),
            TimeElapsedColumn(),
            transient=True,
            disable=not sys.stderr.isatty(),
        ) as bar,
    ):
        task = bar.add_task("replay")
        failure: UnreadableInput | None = None
        try:
            summary = replay(engine, fh, sink, lambda n: bar.advance(task, n), job.pacer)
        except UnreadableInput as exc:  # what was read is processed: kept, then reported
            if exc.summary is None:
                raise
            summary, failure = exc.summary, exc
    for s in job.sinks:
        s.close()
    if job.state_path:
        save_state(engine, job.state_path)
        metrics.last_checkpoint.set(time.time())
    print_summary(summary, engine, echo)
    if failure is not None:
        raise UnreadableInput(
            f"{failure}; the {summary.lines:,} lines before that point were processed"
        )
    if job.hold:
        typer.echo("input done; still serving /metrics until interrupted (Ctrl-C)", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return summary


def print_summary(summary: ReplaySummary, engine: Engine, echo: Callable[[str], None]) -> None:
    rate = summary.lines / max(summary.seconds, 1e-9)
    echo(
        f"read {summary.lines:,} lines in {summary.seconds:.1f} s ({rate:,.0f} lines/s); "
        f"{len(engine.table):,} accounts held; {summary.alerts} alerts; "
        f"{summary.dead_letters} dead letters"
    )
    if summary.budget_evicted or summary.windows_forced or summary.dedup_turned:
        echo(
            f"state budget reached: {summary.budget_evicted:,} accounts evicted (idlest first), "
            f"{summary.windows_forced:,} windows closed early, {summary.windows_split:,} "
            f"scored in parts, {summary.dedup_turned:,} early dedup turnovers"
        )
    if summary.by_category:
        cats = ", ".join(f"{k} {v}" for k, v in summary.by_category.most_common())
        sev = ", ".join(f"{k} {v}" for k, v in summary.by_severity.most_common())
        echo(f"alerts by category: {cats}")
        echo(f"alerts by severity: {sev}")
    if summary.rejected:
        echo(
            "dead letters by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary.rejected.most_common())
        )
    if engine.shadow is not None:
        print_agreement(engine.shadow, echo)


def print_agreement(shadow: Shadow, echo: Callable[[str], None]) -> None:
    """Accounts alerted by both models, by either, per category: how alike they are."""
    total = sum(shadow.alerts.values())
    failed = f"; {shadow.errors} windows failed in the shadow" if shadow.errors else ""
    echo(f"shadow {shadow.version}: {total} alerts (not stored, not sent){failed}")
    parts = []
    for r in shadow.agreement.rows():
        parts.append(
            f"{r['category']} {r['both']}/{r['either']} "
            f"(+{r['shadow_only']} shadow only, -{r['champion_only']} champion only)"
        )
    echo("shadow agreement, accounts alerted by both/either: " + ", ".join(parts))
