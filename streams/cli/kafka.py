"""Kafka commands for the `vigil` CLI: worker, produce, alerts tail."""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    from streams.cli import checks
    from streams.cli.common import ConfigOpt, command_group, fail, load_cli_config

    alerts_app = command_group(help="Read alerts from Kafka.", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")

    @app.command("worker")
    def worker(
        config: ConfigOpt = None,
        data_dir: Annotated[Path | None, typer.Option(help="Table state (RocksDB)")] = None,
        web_host: Annotated[
            str | None,
            typer.Option(help="Address of /metrics and /health; 0.0.0.0 in a container"),
        ] = None,
        web_port: Annotated[
            int | None, typer.Option(min=1, max=65535, help="Port of /metrics and /health")
        ] = None,
        checkpoint_interval: Annotated[float | None, typer.Option(min=0.1, help="Seconds")] = None,
        session_timeout: Annotated[
            float | None, typer.Option(min=0.1, help="Group session, seconds")
        ] = None,
        audit_topic: Annotated[
            str | None, typer.Option(help="Also write processed offsets per batch here")
        ] = None,
        snapshots: Annotated[
            bool | None, typer.Option(help="Write account feature snapshots for the console")
        ] = None,
        snapshot_interval: Annotated[
            float | None,
            typer.Option(min=0.0, help="Seconds between sends of each account's latest snapshot"),
        ] = None,
        loglevel: Annotated[str | None, typer.Option()] = None,
        shadow_model: Annotated[
            str | None,
            typer.Option(
                help="Run this challenger (a model directory) beside the model; its alerts go "
                "to kafka.shadow_alerts_topic only"
            ),
        ] = None,
        without_classifier: Annotated[
            bool,
            typer.Option(
                help="Run without the ONNX classifier instead of stopping when its model cannot be loaded"
            ),
        ] = False,
        discard_unreadable_state: Annotated[
            bool | None,
            typer.Option(
                "--discard-unreadable-state",
                help="Open a partition whose checkpoint cannot be used empty, from its committed "
                "offsets (the events of its open windows are lost), instead of stopping",
            ),
        ] = None,
    ) -> None:
        """Consume events from Kafka, run the engine, produce alerts. Unset options come
        from the config's [worker] table."""
        checks.kafka_libraries()  # before anything imports Faust or aiokafka
        from streams.kafka.app import run_worker

        cfg = load_cli_config(config)
        checks.detectors(cfg, without_classifier)  # a model that cannot load stops it here
        checks.webhook(cfg)
        flags = {
            "data_dir": data_dir,
            "web_host": web_host,
            "web_port": web_port,
            "checkpoint_interval_s": checkpoint_interval,
            "session_timeout_s": session_timeout,
            "audit_topic": audit_topic,
            "emit_snapshots": snapshots,
            "snapshot_interval_s": snapshot_interval,
            "loglevel": loglevel,
            "shadow_model": shadow_model,
            "discard_unreadable_state": discard_unreadable_state,
        }
        settings = dataclasses.replace(
            cfg.worker,
            **{k: v for k, v in flags.items() if v is not None},
            classifier=cfg.worker.classifier and not without_classifier,
        )
        if settings.shadow_model:
            from models.verify import ONNX, model_dir
            from streams.cli.models_cmd import shadow_of

            shadow_of(cfg, settings.shadow_model)  # a shadow that cannot load stops it here
            onnx = str(model_dir(settings.shadow_model) / ONNX)
            settings = dataclasses.replace(settings, shadow_model=onnx)
        from models.verify import check_model

        try:
            # Promotions arriving on the control topic get the registry's full check
            # (files, width, ONNX against scikit-learn) before a worker switches.
            run_worker(cfg, settings, check_model=check_model)
        except ValueError as exc:
            raise fail(str(exc)) from None

    @app.command("produce")
    def produce(
        file: Annotated[Path, typer.Argument(help="events .jsonl or .jsonl.gz")],
        rate: Annotated[
            float, typer.Option(help="Events per second; 0: as fast as possible")
        ] = 0.0,
        topic: Annotated[str, typer.Option(help="Default: kafka.input_topic")] = "",
        no_key: Annotated[bool, typer.Option(help="Send without a key")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Replay an events file into the input topic."""
        import time

        from streams.kafka.produce import produce as run
        from streams.kafka.produce import read_lines

        if not file.is_file():
            raise fail(f"{file} does not exist")
        cfg = load_cli_config(config)
        t0 = time.perf_counter()
        try:
            n = run(read_lines(file), cfg.kafka, topic or None, rate, key_by_account=not no_key)
        except ValueError as exc:  # the file, unreadable part way (read_lines)
            raise fail(str(exc)) from None
        dt = time.perf_counter() - t0
        typer.echo(f"produced {n} events to {topic or cfg.kafka.input_topic} in {dt:.1f}s")

    @alerts_app.command("tail")
    def alerts_tail(
        from_beginning: Annotated[bool, typer.Option(help="Start at the oldest alert")] = False,
        max_alerts: Annotated[int, typer.Option("--max", help="Stop after N alerts")] = 0,
        timeout: Annotated[float, typer.Option(help="Stop after N idle seconds")] = 0.0,
        summary: Annotated[bool, typer.Option(help="One short line per alert")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Follow the alert topic."""
        from streams.kafka.tail import tail

        cfg = load_cli_config(config)
        tail(cfg.kafka, from_beginning, max_alerts, timeout, as_json=not summary)
