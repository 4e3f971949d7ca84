"""The `vigil` command.

Heavy imports (faust, onnxruntime, sqlalchemy) happen inside each command, so `vigil --help`
stays fast. Other packages add their commands through a `register(app)` function in the
modules listed in PLUGINS.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Vigil: streaming misuse detection for AI API platforms.", no_args_is_help=True
)
eval_app = typer.Typer(help="Evaluate detectors.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

PLUGINS = ("streams.kafka.cli", "console.cli", "detectors.nab.cli", "dashboards.cli")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file", show_default=False)
]


def fail(msg: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def load_cli_config(path: Path | None):
    from streams.config import ConfigError, from_env, load_config

    try:
        return from_env(load_config(path))
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _register_plugins() -> None:
    for mod in PLUGINS:
        if importlib.util.find_spec(mod.rsplit(".", 1)[0]) is None:
            continue
        try:
            spec = importlib.util.find_spec(mod)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        importlib.import_module(mod).register(app, eval_app)


def main() -> None:
    # Commands defined in sibling modules register themselves on import.
    from streams import commands  # noqa: F401

    _register_plugins()
    app(prog_name="vigil")
