"""`python -m streams.kafka worker|produce|alerts tail`: the Kafka commands on their own."""

import typer

from streams.kafka.cli import register

app = typer.Typer(no_args_is_help=True)
register(app, typer.Typer())

if __name__ == "__main__":
    app(prog_name="python -m streams.kafka")
