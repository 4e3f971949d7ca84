"""What every `vigil` command shares: the config option, one-line failures, config loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The most a generated corpus may hold: past these, `generate` and the commands that
# generate their own corpora would run for days or run out of memory.
ACCOUNTS_MAX = 1_000_000
HOURS_MAX = 24 * 14
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file", show_default=False, metavar="FILE"),
]


def command_group(**kwargs) -> typer.Typer:
    """A `vigil` command group. Its help is read as Markdown, not as Rich markup (Typer's
    default), which took `[worker]`, `[fusion]` or `[[rules]]` in a help text for tags and
    dropped them."""
    return typer.Typer(rich_markup_mode="markdown", **kwargs)


def fail(msg: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def load_cli_config(path: Path | None):
    from streams.core.config import ConfigError
    from streams.core.config_load import from_env, load_config

    try:
        return from_env(load_config(path))
    except ConfigError as exc:
        raise fail(str(exc)) from None
