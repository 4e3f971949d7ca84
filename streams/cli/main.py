"""The `vigil` command: the one composition root that wires runners, the console and models.

Heavy imports (faust, onnxruntime, sqlalchemy) happen inside each command, so `vigil --help`
stays fast. Each module in COMMANDS adds its commands through `register(app, eval_app)`.
"""

from __future__ import annotations

import errno
import importlib
import sys
from importlib.metadata import version
from typing import Any

import typer

from streams.cli.common import command_group

COMMANDS = (
    "streams.cli.commands",
    "streams.cli.eval_cmd",
    "streams.cli.kafka",
    "streams.cli.console",
    "streams.cli.nab",
    "streams.cli.models_cmd",
    "streams.cli.backtest_cmd",
    "streams.cli.operate",
    "streams.cli.control",
    "dashboards.cli",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vigil {version('vigil')}")
        raise typer.Exit()


METAVARS = {"int": "N", "int range": "N", "float": "X", "float range": "X", "str": "TEXT"}


def _tidy(cmd: Any, ctx: Any) -> None:
    """Plain option help: switches are single flags (`--hold`, not `--hold / --no-hold`
    with a `<bool>` type), and values get a short uppercase metavar. Typer carries its own
    copy of click, so this goes by attributes rather than by click's classes."""
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "argument":
            p.metavar = p.metavar or p.name.upper()
            label = None
        elif getattr(p, "is_flag", False):
            if p.default is False:  # an off-by-default switch needs no --no- twin
                p.secondary_opts = []
                p.show_default = False
            label = None
        else:
            kind = p.display_type(ctx).strip("<>") if hasattr(p, "display_type") else "text"
            label = p.metavar or METAVARS.get(kind, kind.upper())
            p.metavar = label
        # typer's rich help prints its own type label; show ours (or none for a flag).
        p.display_type_rich = lambda ctx, label=label: label
    helper = cmd.get_help_option(ctx)  # made once per command and kept
    if helper is not None:
        helper.display_type_rich = lambda ctx: None
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                _tidy(sub, ctx)


def build() -> typer.Typer:
    app = command_group(
        help="Vigil: streaming misuse detection for AI API platforms.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(
        _version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ) -> None:
        """Vigil: streaming misuse detection for AI API platforms."""

    eval_app = command_group(help="Evaluate detectors.", no_args_is_help=True)
    app.add_typer(eval_app, name="eval")
    for mod in COMMANDS:
        importlib.import_module(mod).register(app, eval_app)
    return app


def command() -> Any:
    cmd = typer.main.get_command(build())
    _tidy(cmd, cmd.context_class(cmd, info_name="vigil"))
    return cmd


def main() -> None:
    """Usage errors are one line naming the problem, as every other error here is."""
    try:
        rv = command().main(prog_name="vigil", standalone_mode=False)
    except typer.Abort:  # Ctrl-C, or no input where a prompt asked for some
        # On a line of its own: a prompt or ^C may have left the cursor mid-line.
        typer.secho(
            "\nerror: aborted: interrupted, or no input for a prompt", err=True, fg=typer.colors.RED
        )
        sys.exit(1)
    except Exception as exc:
        said = _environment_error(exc)
        if said is not None:  # what the machine, a broker or a database refused: not a bug
            message, code = said
            typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
            sys.exit(code)
        if not hasattr(exc, "format_message"):  # a bug, not a usage error: keep its traceback
            raise
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        message = exc.format_message()
        if message:  # none when a group without a command printed its help
            typer.secho(f"error: {where}{message}", err=True, fg=typer.colors.RED)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(rv if isinstance(rv, int) else 0)


def _environment_error(exc: Exception) -> tuple[str, int] | None:
    """(one line, exit status) for an error outside the command: a broker it cannot reach,
    an input cut short, a path or port the machine refused, a store that is no database or
    not up. None for anything else, which keeps its traceback."""
    from streams.core.problems import one_line

    if _is_kafka_error(exc):
        return (
            f"Kafka: {one_line(exc)} (check kafka.bootstrap_servers, its security settings "
            "and that the brokers are up)",
            1,
        )
    if _is_unreadable_input(exc):  # replay.reader names the file and how far it got
        return str(exc), 2
    if isinstance(exc, OSError) and exc.filename is not None:
        # Missing directory, not a directory, no room, no permission: said with the path.
        return f"{exc.strerror or exc}: {exc.filename}", 1
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror}: a port this command was told to listen on is taken", 1
    if _is_store_error(exc):
        reason = one_line(getattr(exc, "orig", None) or exc)
        return f"store: {reason} (check the store URL and that the database is up)", 1
    return None


def _is_kafka_error(exc: Exception) -> bool:
    """An error of the Kafka client the commands use (kafka-python), without importing it:
    `vigil --help` stays fast, and only a command that used it can raise one."""
    errors = sys.modules.get("kafka.errors")
    return errors is not None and isinstance(exc, errors.KafkaError)


def _is_store_error(exc: Exception) -> bool:
    """An error of the database under the alert store (SQLAlchemy's), as for Kafka's."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.DatabaseError)  # OperationalError is one


def _is_unreadable_input(exc: Exception) -> bool:
    reader = sys.modules.get("streams.replay.reader")  # loaded by any command that reads
    return reader is not None and isinstance(exc, reader.UnreadableInput)
