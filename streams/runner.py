"""`vigil replay`: wire files, sinks, metrics and the store around the engine."""

from __future__ import annotations

import contextlib
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import orjson
import typer

from streams.config import VigilConfig
from streams.engine import Engine, Output
from streams.metrics import Metrics
from streams.pacing import Pacer
from streams.replay import open_input, replay
from streams.sinks import FileSink
from streams.snapshots import materialise


def store_url(value: str) -> str:
    return value if "://" in value else f"sqlite:///{Path(value).resolve()}"


def run_replay(
    cfg: VigilConfig,
    path: str,
    alerts_path: Path | None,
    dead_path: Path | None,
    metrics_port: int | None,
    hold: bool,
    store: str | None,
    labels_path: Path | None,
    state_path: Path | None,
    pacer: Pacer | None = None,
) -> None:
    metrics = Metrics()
    db = None
    url = store or cfg.store_url
    if url:
        from console.store import open_store

        db = open_store(store_url(url))
    engine = Engine(
        cfg,
        metrics,
        snoozes=db.active_snoozes if db else None,
        emit_snapshots=db is not None,
    )
    if metrics_port is not None:
        # Once the engine is built, so the first scrape already sees its model and config.
        metrics.serve(metrics_port)
        typer.echo(f"serving metrics on http://127.0.0.1:{metrics_port}/metrics", err=True)
    if state_path and state_path.exists():
        engine.load_state_dict(pickle.loads(state_path.read_bytes()))
        typer.echo(f"resumed engine state from {state_path}", err=True)
    alerts_sink = FileSink(alerts_path) if alerts_path else None
    dead_sink = FileSink(dead_path) if dead_path else None
    collected = []

    def sink(out: Output) -> None:
        if alerts_sink:
            alerts_sink.write([a.to_json() for a in out.alerts])
        if dead_sink:
            dead_sink.write([d.to_json() for d in out.dead_letters])
        if db is not None:
            if out.alerts:
                db.write_alerts([a.to_dict() for a in out.alerts])
            if out.snapshots:
                db.write_snapshots(materialise(out.snapshots))
        if labels_path:
            collected.extend(out.alerts)

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with (
        open_input(path) as fh,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.completed:,} events"),
            TimeElapsedColumn(),
            transient=True,
            disable=not sys.stderr.isatty(),
        ) as bar,
    ):
        task = bar.add_task("replay")
        summary = replay(engine, fh, sink, lambda n: bar.advance(task, n), pacer)
    for s in (alerts_sink, dead_sink):
        if s:
            s.close()
    if state_path:
        state_path.write_bytes(pickle.dumps(engine.state_dict(), protocol=5))
        metrics.last_checkpoint.set(time.time())
    if db is not None:
        db.close()
    _print_summary(summary, engine, alerts_path, dead_path)
    if labels_path:
        from streams.evaluate import print_report, score_alerts

        print_report(score_alerts(collected, orjson.loads(labels_path.read_bytes())), typer.echo)
    if hold:
        typer.echo("input done; still serving /metrics until interrupted (Ctrl-C)", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


def _print_summary(summary, engine: Engine, alerts_path, dead_path) -> None:
    rate = summary.lines / max(summary.seconds, 1e-9)
    typer.echo(
        f"read {summary.lines:,} lines in {summary.seconds:.1f} s ({rate:,.0f} lines/s); "
        f"{len(engine.table):,} accounts held; {summary.alerts} alerts; "
        f"{summary.dead_letters} dead letters"
    )
    if summary.by_category:
        cats = ", ".join(f"{k} {v}" for k, v in summary.by_category.most_common())
        sev = ", ".join(f"{k} {v}" for k, v in summary.by_severity.most_common())
        typer.echo(f"alerts by category: {cats}")
        typer.echo(f"alerts by severity: {sev}")
    if summary.rejected:
        typer.echo(
            "dead letters by reason: "
            + ", ".join(f"{k} {v}" for k, v in summary.rejected.most_common())
        )
    if alerts_path:
        typer.echo(f"alerts written to {alerts_path}")
    if dead_path:
        typer.echo(f"dead letters written to {dead_path}")
