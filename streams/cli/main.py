"""The `vigil` command: the one composition root that wires runners, the console and models.

Heavy imports (faust, onnxruntime, sqlalchemy) happen inside each command, so `vigil --help`
stays fast. Each module in COMMANDS adds its commands through `register(app, eval_app)`.
"""

from __future__ import annotations

import importlib

import typer

COMMANDS = (
    "streams.cli.commands",
    "streams.cli.kafka",
    "streams.cli.console",
    "streams.cli.nab",
)


def build() -> typer.Typer:
    app = typer.Typer(
        help="Vigil: streaming misuse detection for AI API platforms.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    eval_app = typer.Typer(help="Evaluate detectors.", no_args_is_help=True)
    app.add_typer(eval_app, name="eval")
    for mod in COMMANDS:
        importlib.import_module(mod).register(app, eval_app)
    return app


def main() -> None:
    build()(prog_name="vigil")
