"""The core commands: generate, replay, train, eval scenarios."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from streams.cli import checks
from streams.cli.common import ACCOUNTS_MAX, HOURS_MAX, ConfigOpt, fail, load_cli_config


def _progress(total: int | None, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*cols, transient=True, disable=not sys.stderr.isatty())


def generate(
    out: Annotated[Path, typer.Option("--out", help="Output directory")],
    accounts: Annotated[
        int,
        typer.Option(
            min=50, max=ACCOUNTS_MAX, help="Benign accounts (misuse accounts come on top)"
        ),
    ] = 2000,
    hours: Annotated[float, typer.Option(min=1.0, max=HOURS_MAX, help="Hours of traffic")] = 24.0,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed")] = 7,
    bad_rate: Annotated[float, typer.Option(min=0.0, max=0.1, help="Share of bad lines")] = 1e-4,
) -> None:
    """Write OUT/events.jsonl.gz and OUT/labels.json (ground truth with onsets)."""
    from synth.generate import generate as gen

    checks.output_dir(out, "--out")
    with _progress(accounts, "generating") as bar:
        task = bar.add_task("gen", total=accounts)
        try:
            res = gen(
                out,
                accounts,
                hours,
                seed,
                bad_rate=bad_rate,
                progress=lambda i, n: bar.update(task, completed=i),
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    typer.echo(
        f"wrote {res.events:,} events for {res.accounts:,} accounts "
        f"({res.misuse_accounts} misuse) to {res.events_path}; ground truth in {res.labels_path}"
    )


def replay(
    path: Annotated[str, typer.Argument(help=".jsonl, .jsonl.gz or - for stdin")],
    alerts: Annotated[Path | None, typer.Option(help="Write alerts here (JSON Lines)")] = None,
    dead_letters: Annotated[Path | None, typer.Option(help="Write rejected events here")] = None,
    config: ConfigOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve /metrics")
    ] = None,
    hold: Annotated[bool, typer.Option(help="Keep serving /metrics after the input ends")] = False,
    store: Annotated[
        str | None,
        typer.Option(help="Alert store URL (sqlite:///... or postgresql://...), or a path"),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground truth: print quality against it")
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="Load engine state from here if present, save it at the end")
    ] = None,
    without_classifier: Annotated[
        bool,
        typer.Option(
            help="Run without the ONNX classifier instead of stopping when its model cannot be loaded"
        ),
    ] = False,
    speed: Annotated[
        float | None,
        typer.Option(help="Pace the input: event time runs at SPEED times real time"),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Pace the input: RATE events per second")
    ] = None,
    shadow_model: Annotated[
        str | None,
        typer.Option(
            help="Run this challenger beside the model: a model directory, or with a store "
            "a registered version or stage (shadow, champion)"
        ),
    ] = None,
    shadow_alerts: Annotated[
        Path | None, typer.Option(help="Write the challenger's alerts here (never to the store)")
    ] = None,
    reset: Annotated[
        list[str] | None,
        typer.Option(help="Start this detector empty though --state holds it (repeatable)"),
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option(help="Control records (JSON Lines, each with `at`) applied at event time"),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model directory (`vigil train --out`) or .onnx file to score with"),
    ] = None,
) -> None:
    """Process events in event-time order (as fast as possible unless paced); print a summary."""
    from streams.replay.pacing import Pacer, PacingError

    cfg = load_cli_config(config)
    if model is not None:
        cfg = checks.model_option(cfg, model)
    if hold and metrics_port is None:
        raise fail("--hold needs --metrics-port")
    checks.input_file(path)
    reads = [path, *(p for p in (labels, control, state) if p is not None)]
    checks.output_file(alerts, "--alerts", reads)
    checks.output_file(dead_letters, "--dead-letters", reads)
    checks.output_file(state, "--state", [path])
    truth = checks.json_file(labels, "--labels")
    if truth is not None:
        from synth.evaluate import labels_problem

        if problem := labels_problem(truth):
            raise fail(f"--labels {labels}: not ground truth vigil generate writes ({problem})")
    url = store or cfg.store_url
    url = checks.store_url(url, "--store" if store else "store_url") if url else None
    try:
        pacer = Pacer(speed, rate) if speed is not None or rate is not None else None
    except PacingError as exc:
        raise fail(str(exc)) from None
    if url and not without_classifier:
        from streams.cli.models_cmd import registry_model

        cfg = registry_model(cfg, url)  # model_path = champion, shadow or a version
    detectors = checks.detectors(cfg, without_classifier)
    checks.webhook(cfg, dead_letters, "replay")
    checks.output_file(shadow_alerts, "--shadow-alerts", reads)
    if shadow_alerts and not shadow_model:
        raise fail("--shadow-alerts needs --shadow-model")
    shadow = None
    if shadow_model:
        from streams.cli.models_cmd import resolve_model, shadow_of

        shadow = shadow_of(cfg, resolve_model(shadow_model, url, "--shadow-model")[0])
    if reset and (state is None or not state.exists()):
        raise fail("--reset needs --state naming a saved state")
    for name in reset or []:
        if name not in detectors:
            raise fail(f"--reset {name}: not a detector of this run ({', '.join(detectors)})")

    from streams.engine.metrics import Metrics
    from streams.replay.runner import ReplayJob, run_replay
    from streams.runtime.sinks import AlertFile, CallbackSink, DeadLetterFile, ShadowAlertFile

    metrics = Metrics()
    sinks: list = []
    if alerts:
        sinks.append(AlertFile(alerts))
    dl_file = DeadLetterFile(dead_letters) if dead_letters else None
    hook = None
    if cfg.webhook.url and dl_file is not None:
        from streams.runtime.webhook import WebhookSink

        # Before the dead-letter file: sinks close in order, and the webhook's closing
        # may still dead-letter what it could not deliver.
        hook = WebhookSink(cfg.webhook, metrics.webhook, dl_file.dead_letter)
        sinks.append(hook)
    if dl_file is not None:
        sinks.append(dl_file)
    if shadow_alerts:
        sinks.append(ShadowAlertFile(shadow_alerts))
    db = None
    if url:
        from console.sink import StoreSink
        from console.store import open_store

        db = open_store(url)
        sinks.append(StoreSink(db))
    recorder = None
    if shadow is not None and db is not None:  # the console shows the two side by side
        from streams.replay.backtest import Recorder

        recorder = Recorder()
        sinks.append(recorder)
    collected: list = []
    if truth is not None:
        sinks.append(CallbackSink(lambda out: collected.extend(out.alerts)))
    snoozes = db.active_snoozes if db else None
    ctl = None
    if control is not None:
        from streams.replay.control import load_control
        from streams.runtime.control import ControlError

        checks.input_file(str(control))
        try:
            ctl = load_control(control, cfg, "classifier" in (detectors or {}), snoozes)
        except ControlError as exc:
            raise fail(str(exc)) from None
        snoozes = ctl.snoozed
    job = ReplayJob(
        config=cfg,
        path=path,
        sinks=sinks,
        metrics_port=metrics_port,
        hold=hold,
        state_path=state,
        snoozes=snoozes,
        snapshots=db is not None,
        detectors=detectors,
        pacer=pacer,
        metrics=metrics,
        shadow=shadow,
        on_features=recorder.traffic.add if recorder else None,
        reset=tuple(reset or ()),
        before_window=ctl.before_window if ctl else None,
    )
    try:
        run_replay(job)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if alerts:
        typer.echo(f"alerts written to {alerts}")
    if dead_letters:
        typer.echo(f"dead letters written to {dead_letters}")
    if hook is not None:
        gave_up = sum(n for k, n in hook.counts.items() if k != "sent")
        typer.echo(f"webhook: {hook.counts['sent']} alerts delivered, {gave_up} dead-lettered")
    if shadow_alerts:
        typer.echo(f"shadow alerts written to {shadow_alerts}")
    if recorder is not None and shadow is not None and url:
        from streams.cli.backtest_cmd import save_shadow_run

        save_shadow_run(url, recorder, shadow, detectors, path, shadow_model or "")
    if truth is not None:
        from synth.evaluate import print_report, score_alerts

        print_report(score_alerts(collected, truth), typer.echo)


def train(
    out: Annotated[
        Path | None, typer.Option(help="Model directory to write (required; may not be omitted)")
    ] = None,
    events: Annotated[
        list[Path] | None,
        typer.Option("--events", help="Events the verdicts were made on (repeat for several)"),
    ] = None,
    verdicts: Annotated[
        list[Path] | None,
        typer.Option(
            "--verdicts", help="Console verdicts: labels .jsonl or the labels .csv export"
        ),
    ] = None,
    base: Annotated[
        Path | None, typer.Option(help="Parent model directory or .onnx (default: the shipped one)")
    ] = None,
    weak_negatives: Annotated[
        bool, typer.Option(help="Count unjudged alerting windows as false positives")
    ] = False,
    accounts: Annotated[int, typer.Option(min=200, max=ACCOUNTS_MAX)] = 2000,
    hours: Annotated[float, typer.Option(min=6, max=HOURS_MAX)] = 24.0,
    config: ConfigOpt = None,
) -> None:
    """Train a model: from analysts' verdicts (--events, --verdicts) or, without them, the
    default classifier from generated data (rebuild the shipped one with --out models/artifacts)."""
    if out is None:
        raise fail("--out is required (to rebuild the shipped model, pass --out models/artifacts)")
    checks.output_dir(out, "--out")
    if bool(events) != bool(verdicts):
        raise fail("--events and --verdicts go together: the verdicts' windows are in the events")
    if not events:
        from models.train import TrainConfig
        from models.train import train as run

        run(TrainConfig(accounts=accounts, hours=hours), out, log=typer.echo)
        return
    for p in events:
        checks.input_file(str(p))
    for p in verdicts or []:
        if not p.is_file():
            raise fail(f"--verdicts {p} does not exist")
    if base is not None and not base.exists():
        raise fail(f"--base {base} does not exist")
    cfg = load_cli_config(config)
    from models.verdict_train import train_from_verdicts
    from models.verdicts import VerdictError
    from streams.engine.engine import ModelError

    try:
        train_from_verdicts(
            list(events),
            list(verdicts or []),
            out,
            cfg,
            base,
            weak_negatives=weak_negatives,
            log=typer.echo,
        )
    except (VerdictError, ModelError, ValueError) as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(replay)
    app.command()(train)
