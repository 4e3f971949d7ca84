"""`vigil eval scenarios | cross-source | verdict-loop`: detection quality on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli import checks
from streams.cli.common import ACCOUNTS_MAX, HOURS_MAX, ConfigOpt, fail, load_cli_config


def eval_scenarios(
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Generator seed (not one used for training)")
    ] = 9001,
    accounts: Annotated[int, typer.Option(min=200, max=ACCOUNTS_MAX)] = 4000,
    hours: Annotated[float, typer.Option(min=6, max=HOURS_MAX)] = 24.0,
    config: ConfigOpt = None,
    data: Annotated[Path, typer.Option(help="Where generated corpora are cached")] = Path(
        "data/eval"
    ),
) -> None:
    """Recall, precision and time-to-detect per misuse scenario on held-out generated data."""
    from models.train import TrainConfig
    from synth.evaluate import evaluate_scenarios, print_report

    if seed in TrainConfig().seeds or seed == TrainConfig().holdout_seed:
        raise fail(f"seed {seed} is used to train the shipped model; pick another")
    cfg = load_cli_config(config)
    print_report(evaluate_scenarios(cfg, data, accounts, hours, seed))


def eval_cross_source(
    events: Annotated[Path, typer.Option(help="Events of the other source (.jsonl or .jsonl.gz)")],
    truth: Annotated[Path, typer.Option(help="Its truth.json (labels, incidents, hard negatives)")],
    seed: Annotated[
        int,
        typer.Option(min=0, max=2**32 - 1, help="Held-out generator seed for the other direction"),
    ] = 9001,
    accounts: Annotated[int, typer.Option(min=200, max=ACCOUNTS_MAX)] = 4000,
    hours: Annotated[float, typer.Option(min=6, max=HOURS_MAX)] = 24.0,
    fit: Annotated[
        bool, typer.Option(help="Also train on the other source and report both ways")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Write every figure here as JSON")] = None,
    config: ConfigOpt = None,
    data: Annotated[Path, typer.Option(help="Cache of generated corpora and fitted models")] = Path(
        "data/cross"
    ),
) -> None:
    """Fit on one source, report on another: Vigil's generator <-> a labelled corpus."""
    import orjson

    from models.crosssource import TruthFileError, run_cross_source
    from streams.replay.reader import UnreadableInput

    for p in (events, truth):
        if not p.is_file():
            raise fail(f"{p} does not exist")
    cfg = load_cli_config(config)
    try:
        res = run_cross_source(cfg, events, truth, data, accounts, hours, seed, fit, typer.echo)
    except (UnreadableInput, TruthFileError) as exc:  # each names its file
        raise fail(str(exc)) from None
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise _not_truth(truth, exc) from None
    if out:
        out.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))


def _not_truth(path: Path, exc: Exception) -> typer.Exit:
    why = f"no field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
    return fail(f"{path}: not a truth file this command reads ({why})")


def eval_verdict_loop(
    events: Annotated[Path, typer.Option(help="Labelled events (.jsonl or .jsonl.gz)")],
    truth: Annotated[Path, typer.Option(help="truth.json of a corpus, or a generator labels.json")],
    out: Annotated[Path, typer.Option(help="Directory for verdicts, model and loop.json")],
    hours: Annotated[
        float, typer.Option(min=1, max=HOURS_MAX, help="Hours judged before retraining")
    ] = 18.0,
    reject: Annotated[
        list[str] | None,
        typer.Option(help="Alert category the analysts call false alarms (a policy stress test)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Alerts of the first HOURS judged from truth, a model trained on those verdicts, both
    models scored on the hours after."""
    import orjson

    from models.crosssource import TruthFileError
    from models.verdict_loop import run_loop
    from streams.engine.engine import ModelError

    for p in (events, truth):
        if not p.is_file():
            raise fail(f"{p} does not exist")
    checks.output_dir(out, "--out")
    cfg = load_cli_config(config)
    try:
        run_loop(events, truth, hours, out, cfg, typer.echo, frozenset(reject or ()))
    except TruthFileError as exc:
        raise fail(str(exc)) from None
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise _not_truth(truth, exc) from None
    except (ModelError, ValueError) as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    eval_app.command("scenarios")(eval_scenarios)
    eval_app.command("cross-source")(eval_cross_source)
    eval_app.command("verdict-loop")(eval_verdict_loop)
