"""The operator's commands: `vigil warm` (detector state from history) and `vigil calibrate`
(per-category thresholds for an alert budget). docs/operators.md explains both."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from streams.cli import checks
from streams.cli.common import ConfigOpt, fail, load_cli_config

EventsOpt = Annotated[
    list[str], typer.Option("--events", help="Events, oldest first (.jsonl, .jsonl.gz; repeatable)")
]
WithoutClassifier = Annotated[
    bool, typer.Option(help="Run without the ONNX classifier instead of stopping without it")
]


def warm(
    events: EventsOpt,
    out: Annotated[Path, typer.Option("--out", help="Write the engine state here")],
    config: ConfigOpt = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Warm only this detector (repeatable) into the state --into holds"),
    ] = None,
    into: Annotated[
        Path | None, typer.Option(help="With --only: the state whose other parts are kept")
    ] = None,
    without_classifier: WithoutClassifier = False,
) -> None:
    """Build the engine's state (baselines, population trees, campaign indexes, ...) from
    history, in the format `vigil replay --state` loads."""
    from streams.replay.warm import load_state, save_state, splice, warm_engine

    cfg = load_cli_config(config)
    for p in events:
        checks.input_file(p)
    checks.output_file(out, "--out", events)
    if bool(only) != (into is not None):
        raise fail("--only and --into go together: the detectors to warm and the state to keep")
    if into is not None and not into.is_file():
        raise fail(f"--into {into} does not exist")
    detectors = checks.detectors(cfg, without_classifier)
    for name in only or []:
        if name not in detectors:
            raise fail(f"--only {name}: not a detector of this run ({', '.join(detectors)})")
    # With --only, the history runs through those detectors alone: the others' state comes
    # from --into unchanged.
    run_with = {k: v for k, v in detectors.items() if not only or k in only}
    try:
        engine, summary = warm_engine(cfg, events, run_with)
        if into is not None:
            from streams.engine.engine import Engine

            base = Engine(cfg, detectors=checks.detectors(cfg, without_classifier))
            base.load_state_dict(load_state(into))
            splice(base, engine, list(only or []))
            engine = base
        size = save_state(engine, out)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    what = ", ".join(only) if only else ", ".join(engine.detectors)
    typer.echo(
        f"warmed {what} on {summary.lines:,} lines ({summary.accounts:,} accounts held, "
        f"{summary.dead_letters:,} dead letters); state {size / 1e6:,.1f} MB written to {out}"
    )


def calibrate(
    events: EventsOpt,
    budget: Annotated[
        float, typer.Option(min=0.0, help="Benign alerts per 1,000 accounts per day")
    ],
    out: Annotated[Path, typer.Option("--out", help="Write the calibrated config here (TOML)")],
    verdicts: Annotated[
        list[Path] | None, typer.Option(help="Console verdicts (.jsonl or .csv; repeatable)")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground truth: generator labels.json or a truth.json")
    ] = None,
    recent: Annotated[
        float | None,
        typer.Option(min=0.1, help="Budget on the last HOURS only (earlier events warm up)"),
    ] = None,
    floor: Annotated[
        float | None,
        typer.Option(min=0.05, max=1.0, help="Lowest threshold to try (default alert_threshold)"),
    ] = None,
    config: ConfigOpt = None,
    without_classifier: WithoutClassifier = False,
) -> None:
    """Per-category thresholds that meet a budget of benign alerts, with the recall they
    keep on labelled data, written as a config file (a new config version)."""
    from models import calibrate as cal
    from models.toml_out import dumps
    from streams.core.config import ConfigError
    from streams.core.config_load import load_config
    from streams.core.config_version import config_version

    cfg = load_cli_config(config)
    for p in events:
        checks.input_file(p)
    checks.output_file(out, "--out", events)
    truth = cal.Truth()
    try:
        if labels is not None:
            if not labels.is_file():
                raise fail(f"--labels {labels} does not exist")
            truth.misuse = cal.load_truth(labels)
        for v in verdicts or []:
            if not v.is_file():
                raise fail(f"--verdicts {v} does not exist")
        found = cal.load_verdicts(list(verdicts or []))
    except (ValueError, KeyError) as exc:
        raise fail(f"{exc}") from None
    truth.verdict_misuse = {a for a, v in found.items() if v == "misuse"}
    lo = cfg.fusion.alert_threshold if floor is None else floor
    detectors = checks.detectors(cfg, without_classifier)
    rec = cal.record_candidates(
        cfg, events, min(lo, cfg.fusion.floor()), recent * 3600 if recent else None, detectors
    )
    typer.echo(
        f"recorded {len(rec.cand['fused']):,} candidates; {rec.accounts:,} accounts over "
        f"{rec.days:.2f} days; benign = alerts not on accounts confirmed misuse "
        f"({len(truth.verdict_misuse)} misuse verdicts, {len(truth.misuse)} labelled accounts)"
    )
    now = cal.at(rec, truth, cfg.fusion)
    cal.report(typer.echo, "current thresholds (from the recording)", now)
    fusion, chosen = cal.choose(rec, truth, budget, cfg.fusion, lo)
    cal.report(typer.echo, "chosen thresholds (from the recording)", chosen)
    new_cfg = dataclasses.replace(cfg, fusion=fusion)
    checked, _ = cal.verify(new_cfg, events, rec, truth, classifier=not without_classifier)
    cal.report(typer.echo, "chosen thresholds (verified by a replay)", checked)
    met = checked.benign_per_1k_day <= budget
    typer.echo("thresholds: " + ", ".join(f"{k} {v:.2f}" for k, v in fusion.thresholds.items()))
    data = tomllib.loads(config.read_text()) if config else {}
    data.setdefault("fusion", {})["thresholds"] = dict(fusion.thresholds)
    text = dumps(data)
    try:
        version = config_version(load_config(_write(out, text)))
    except ConfigError as exc:  # would be a bug here: the written file must load
        raise fail(f"{out}: {exc}") from None
    verdict = "met" if met else "MISSED (no thresholds reach it on this traffic)"
    head = (
        f"# vigil calibrate --budget {budget:g}: budget {verdict}; verified "
        f"{checked.benign_per_1k_day:.2f} benign alerts per 1,000 accounts per day, "
        f"macro recall {checked.macro_recall:.3f}\n"
    )
    _write(out, head + text)
    typer.echo(f"budget {budget:g} {verdict}; config {version} written to {out}")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command()(warm)
    app.command()(calibrate)
