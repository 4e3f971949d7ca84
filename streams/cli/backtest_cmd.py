"""`vigil backtest`: a challenger against the champion on the same events, one replay."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli import checks
from streams.cli.common import ConfigOpt, fail, load_cli_config
from streams.cli.models_cmd import ActorOpt, StoreOpt, actor_name, resolve_model

ModelArg = "a model directory, or with a store a registered version or stage"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def print_diff(d: dict, echo=typer.echo) -> None:  # type: ignore[no-untyped-def]
    t = d["traffic"]
    echo(
        f"{t['accounts']:,} accounts over {t['days']:.2f} days; verdicts: {d['verdicts']['count']}"
    )
    for side in ("champion", "challenger"):
        s = d[side]
        rate = s["benign_per_1000_per_day"]
        echo(
            f"{side:<10} {s['model_version']}: {s['alerts']} alerts on {s['accounts']} accounts; "
            f"precision {_pct(s['precision'])} on {s['judged']} judged; benign alerts per "
            f"1,000 accounts per day {'–' if rate is None else rate}"
        )
    echo(f"gained {d['gained']}, lost {d['lost']}, severity changed {d['severity_changed']}")
    for title in ("by_category", "by_severity"):
        parts = [
            f"{r['key']} {r['champion']}->{r['challenger']} (+{r['gained']} -{r['lost']})"
            for r in d[title]
        ]
        echo(f"{title.replace('_', ' ')}: " + (", ".join(parts) or "no alerts"))
    changed = d["changed_accounts"]
    kinds = {k: sum(1 for c in changed if c["change"] == k) for k in ("gained", "lost", "changed")}
    echo(
        f"accounts that changed: {len(changed)} ({kinds['gained']} newly alerted, "
        f"{kinds['lost']} no longer alerted, {kinds['changed']} alerted differently)"
    )


def backtest(
    events: Annotated[str, typer.Argument(help=".jsonl or .jsonl.gz events")],
    champion: Annotated[str, typer.Option(help=f"The current model: {ModelArg}")],
    challenger: Annotated[str, typer.Option(help=f"The candidate: {ModelArg}")],
    verdicts: Annotated[
        Path | None, typer.Option(help="Console labels (JSON Lines): precision where judged")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the diff here")] = None,
    store: StoreOpt = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Replay EVENTS once with both models (the challenger as shadow) and report the diff:
    alerts gained and lost, precision against verdicts, benign alert rate, accounts that
    changed. With a store, the diff is saved and opens in the console at /backtests/ID."""
    import orjson

    from streams.engine.engine import ModelError
    from streams.replay.backtest import VerdictError, diff, read_verdicts, run_both

    cfg = load_cli_config(config)
    checks.input_file(events)
    if events == "-":
        raise fail("backtest reads a file, not stdin")
    checks.output_file(json_out, "--json")
    url = store or cfg.store_url
    url = checks.store_url(url, "--store" if store else "store_url") if url else None
    if verdicts is not None and not verdicts.is_file():
        raise fail(f"--verdicts {verdicts} does not exist")
    try:
        judged = read_verdicts(verdicts) if verdicts else None
    except VerdictError as exc:
        raise fail(f"--verdicts {exc}") from None
    a, a_label = resolve_model(champion, url, "--champion")
    b, b_label = resolve_model(challenger, url, "--challenger")
    from models.verify import ONNX, model_dir

    try:
        run = run_both(cfg, events, str(model_dir(a) / ONNX), str(model_dir(b) / ONNX))
    except (ModelError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    labels = {"champion": a_label, "challenger": b_label, "events": events}
    if verdicts:
        labels["verdicts"] = str(verdicts)
    d = diff(run, judged, labels)
    print_diff(d)
    if json_out:
        json_out.write_bytes(orjson.dumps(d, option=orjson.OPT_INDENT_2))
        typer.echo(f"diff written to {json_out}")
    if url:
        from console.backtests import save_backtest
        from console.store import open_store

        with open_store(url) as db:
            bid = save_backtest(db, actor_name(actor), a_label, b_label, events, d)
        typer.echo(f"saved as backtest {bid}: /backtests/{bid} in the console")


def save_shadow_run(url, recorder, shadow, detectors, events: str, label: str) -> None:  # type: ignore[no-untyped-def]
    """A replay with a shadow and a store: its diff saved like a backtest's, so the console
    shows the champion and the shadow side by side (without verdicts)."""
    from console.backtests import save_backtest
    from console.store import open_store
    from streams.replay.backtest import diff

    version = str(getattr(detectors.get("classifier"), "version", "none"))
    labels = {"champion": "the replay's model", "challenger": f"shadow {label}", "events": events}
    d = diff(recorder.run(shadow, version), None, labels)
    with open_store(url) as db:
        bid = save_backtest(db, actor_name(None), version, labels["challenger"], events, d)
    typer.echo(f"shadow agreement saved: /backtests/{bid} in the console")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command()(backtest)
