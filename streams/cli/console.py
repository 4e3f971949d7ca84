"""`vigil console` and `vigil console-user`: serve the console, manage who may use it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", help="store URL (sqlite:///path, a file path, postgresql+psycopg://...)"
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file")]


def _store_url(store: str, config: Path | None) -> str:
    """The store's URL, checked: one that names no store Vigil can use stops here."""
    from streams.cli import checks
    from streams.cli.common import fail, load_cli_config

    cfg = load_cli_config(config)  # checked even when --store makes its store_url moot
    if store:
        return checks.store_url(store)
    url = cfg.store_url
    if not url:
        raise fail("no store: pass --store URL or set store_url / VIGIL_STORE_URL")
    return checks.store_url(url, "store_url")


def default_labels_file(url: str) -> Path | None:
    """Next to an SQLite store, so `make demo` keeps everything in one folder."""
    from console.store import sqlite_file

    path = sqlite_file(url)
    return None if path is None else path.with_name("analyst-labels.jsonl")


def parse_sla(items: list[str]) -> dict[str, float]:
    """`critical=900` pairs into seconds per severity; a bad one fails with one line."""
    from console.backlog import SEVERITIES
    from streams.cli.common import fail

    out: dict[str, float] = {}
    for item in items:
        sev, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if sev not in SEVERITIES or not seconds > 0:
            raise fail(
                f"--backlog-sla {item!r}: expected SEVERITY=SECONDS, severity one of "
                f"{', '.join(SEVERITIES)} and seconds above 0"
            )
        out[sev] = seconds
    return out


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    from streams.cli.common import command_group
    from streams.runtime.kafka_client import security_options

    users_app = command_group(help="Manage console users.", no_args_is_help=True)
    app.add_typer(users_app, name="console-user")

    @app.command("console")
    def console_cmd(
        store: StoreOpt = "",
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8080,
        labels_file: Annotated[
            Path | None, typer.Option(help="JSON Lines file that receives every verdict")
        ] = None,
        labels_kafka: Annotated[
            bool, typer.Option(help="publish verdicts and snoozes to the Kafka topics instead")
        ] = False,
        trusted_header: Annotated[
            str, typer.Option(help="header naming the user, set by an authenticating proxy")
        ] = "",
        trusted_role_header: Annotated[
            str, typer.Option(help="header carrying the role (viewer|analyst) from the proxy")
        ] = "",
        trusted_proxy: Annotated[
            list[str] | None, typer.Option(help="proxy address allowed to set those headers")
        ] = None,
        secure_cookies: Annotated[bool, typer.Option(help="mark cookies Secure (HTTPS)")] = False,
        backlog_sla: Annotated[
            list[str] | None,
            typer.Option(help="time to a first verdict, SEVERITY=SECONDS (repeatable)"),
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Serve the analyst console (and its /metrics)."""
        import uvicorn

        from console.app import create_app
        from console.auth import AuthSettings
        from console.backlog import SEVERITIES
        from console.labels import FileLabelPublisher, KafkaLabelPublisher, LabelPublisher
        from console.startup import StartupError, check_store_url, console_secret
        from console.store import open_store
        from streams.cli.common import fail, load_cli_config

        cfg = load_cli_config(config)
        sla_override = parse_sla(backlog_sla or [])  # checked before anything starts
        url = _store_url(store, config)
        # Checked before anything opens or listens: a deployment that kept a placeholder
        # fails here with one line, instead of serving sessions signed with a known key.
        try:
            secret = console_secret(cfg.console.secret, host)
            check_store_url(url)
        except StartupError as exc:
            raise fail(str(exc)) from None
        st = open_store(url)
        publisher: LabelPublisher | None = None
        if labels_kafka:
            k = cfg.kafka
            publisher = KafkaLabelPublisher(
                k.bootstrap_servers, k.labels_topic, k.snoozes_topic, **security_options(k)
            )
        else:
            path = labels_file or default_labels_file(url)
            if path is not None:
                publisher = FileLabelPublisher(path)
                typer.echo(f"verdicts are appended to {path}")
        auth_kwargs: dict = {
            "secret": secret,
            "cookie_secure": secure_cookies,
            "trusted_header": trusted_header,
            "trusted_role_header": trusted_role_header,
        }
        if trusted_proxy:
            auth_kwargs["trusted_proxies"] = tuple(trusted_proxy)
        web = create_app(
            st,
            AuthSettings(**auth_kwargs),
            publisher,
            default_threshold=cfg.fusion.alert_threshold,
            # [console] sla_minutes, with --backlog-sla SEVERITY=SECONDS over it.
            sla_minutes={
                **dict(zip(SEVERITIES, cfg.console.sla_minutes, strict=True)),
                **{k: s / 60.0 for k, s in sla_override.items()},
            },
            common_link_share=cfg.console.common_link_share,
        )
        from console.users import list_users

        if not list_users(st) and not trusted_header:
            typer.secho(
                "no console users yet: add one with `vigil console-user add NAME --role analyst`",
                fg=typer.colors.YELLOW,
            )
        typer.echo(f"console on http://{host}:{port}/ (store {st.engine.url!r})")
        uvicorn.run(web, host=host, port=port, log_level="warning", proxy_headers=False)

    @app.command("store-sink")
    def store_sink(
        store: StoreOpt = "",
        group_id: Annotated[str, typer.Option(help="consumer group")] = "vigil-store-sink",
        metrics_port: Annotated[
            int | None, typer.Option(min=1, max=65535, help="Serve /metrics on this port")
        ] = None,
        metrics_host: Annotated[str, typer.Option(help="address of /metrics")] = "127.0.0.1",
        config: ConfigOpt = None,
    ) -> None:
        """Copy the Kafka alert and snapshot topics into the store (for the console)."""
        import signal
        import threading

        from console.kafka_sink import consume
        from console.sink_metrics import SinkMetrics
        from console.store import open_store
        from streams.cli.common import load_cli_config

        cfg = load_cli_config(config)
        k = cfg.kafka
        sink_metrics = SinkMetrics((k.alerts_topic, k.snapshots_topic))
        if metrics_port is not None:
            sink_metrics.serve(metrics_port, metrics_host)
            typer.echo(f"serving metrics on http://{metrics_host}:{metrics_port}/metrics")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with open_store(_store_url(store, config)) as st:
            typer.echo(f"copying {k.alerts_topic} and {k.snapshots_topic} into the store")
            stats = consume(
                st,
                k.bootstrap_servers,
                k.alerts_topic,
                k.snapshots_topic,
                group_id,
                stop,
                metrics=sink_metrics,
                **security_options(k),
            )
        typer.echo(
            f"stored {stats.alerts} alerts ({stats.new_alerts} new), "
            f"{stats.snapshots} snapshots; {stats.bad_records} bad records"
        )

    @users_app.command("add")
    def user_add(
        name: str,
        role: Annotated[str, typer.Option(help="viewer or analyst")] = "viewer",
        password_stdin: Annotated[
            bool, typer.Option(help="read the password from standard input")
        ] = False,
        store: StoreOpt = "",
        config: ConfigOpt = None,
    ) -> None:
        """Add a user, or change an existing user's role and password."""
        from console.store import open_store
        from console.users import add_user, check_user
        from streams.cli.common import fail

        # Everything that can be checked without the password is, before asking for it.
        url = _store_url(store, config)
        try:
            check_user(name, role)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if password_stdin:
            line = sys.stdin.buffer.readline().removesuffix(b"\n").removesuffix(b"\r")
            try:
                password = line.decode("utf-8")
            except UnicodeDecodeError:
                raise fail("--password-stdin: the password read is not UTF-8 text") from None
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        with open_store(url) as st:
            try:
                add_user(st, name, role, password)
            except ValueError as exc:
                raise fail(str(exc)) from None
        typer.echo(f"user {name} ({role}) saved")

    @users_app.command("token")
    def user_token(name: str, store: StoreOpt = "", config: ConfigOpt = None) -> None:
        """Issue an API token for a user (replaces the old one); printed once."""
        from console.store import open_store
        from console.users import issue_token
        from streams.cli.common import fail

        with open_store(_store_url(store, config)) as st:
            try:
                typer.echo(issue_token(st, name))
            except ValueError as exc:
                raise fail(str(exc)) from None

    @users_app.command("list")
    def user_list(store: StoreOpt = "", config: ConfigOpt = None) -> None:
        """List users and roles."""
        from console.store import open_store
        from console.users import list_users

        with open_store(_store_url(store, config)) as st:
            for u in list_users(st):
                typer.echo(f"{u.name}\t{u.role}")

    @users_app.command("remove")
    def user_remove(name: str, store: StoreOpt = "", config: ConfigOpt = None) -> None:
        """Remove a user."""
        from console.store import open_store
        from console.users import remove_user
        from streams.cli.common import fail

        with open_store(_store_url(store, config)) as st:
            if not remove_user(st, name):
                raise fail(f"no user {name!r}")
        typer.echo(f"user {name} removed")
