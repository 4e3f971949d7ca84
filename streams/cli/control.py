"""`vigil control`: publish promotions, rollbacks, config versions and snoozes.

Running workers switch to them within seconds (streams/kafka/control.py). With `--to-file`
the record is appended to a JSON Lines file for `vigil replay --control` instead, with
`--at` saying from which event time it applies.
"""

import getpass
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from streams.cli.common import command_group, fail, load_cli_config

AtOpt = Annotated[
    str | None,
    typer.Option(help="With --to-file: event time it applies from (RFC 3339 or epoch seconds)"),
]
ToFileOpt = Annotated[
    Path | None,
    typer.Option(help="Append the record to this JSON Lines file instead of publishing it"),
]


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    from streams.cli.common import ConfigOpt

    control_app = command_group(
        help="Switch running workers to another model, config or snooze.", no_args_is_help=True
    )
    app.add_typer(control_app, name="control")

    @control_app.command("promote")
    def promote(
        model: Annotated[Path, typer.Option(help="Model directory (vigil train --out) or .onnx")],
        config: ConfigOpt = None,
        to_file: ToFileOpt = None,
        at: AtOpt = None,
    ) -> None:
        """Every worker loads this model and scores with it from its next batch on; a model
        that fails to load there is refused and the running one stays."""
        emit_model(model, "promote", config, to_file, at)

    @control_app.command("rollback")
    def rollback(
        model: Annotated[Path, typer.Option(help="The previous model's directory or .onnx")],
        config: ConfigOpt = None,
        to_file: ToFileOpt = None,
        at: AtOpt = None,
    ) -> None:
        """As promote, recorded as a rollback."""
        emit_model(model, "rollback", config, to_file, at)

    @control_app.command("config")
    def config_cmd(
        file: Annotated[Path, typer.Argument(help="TOML with [fusion] and/or [[rules]] only")],
        config: ConfigOpt = None,
        to_file: ToFileOpt = None,
        at: AtOpt = None,
    ) -> None:
        """Switch the workers' fusion thresholds and rules; other settings need a restart."""
        from streams.runtime.control import ControlError, config_record

        if not file.is_file():
            raise fail(f"config file {file} does not exist")
        try:
            rec = config_record(tomllib.loads(file.read_text()), getpass.getuser())
        except tomllib.TOMLDecodeError as exc:
            raise fail(f"config file {file} is not valid TOML: {exc}") from None
        except ControlError as exc:
            raise fail(str(exc)) from None
        emit(config, "control", b"config", rec, to_file, at)

    @control_app.command("snooze")
    def snooze(
        account: Annotated[str, typer.Option(help="Account id")],
        detector: Annotated[str, typer.Option(help="Detector name, e.g. rules or classifier")],
        days: Annotated[float, typer.Option(min=0.0, max=180.0, help="How long")] = 7.0,
        reason: Annotated[str, typer.Option(help="Why (kept with the snooze)")] = "",
        lift: Annotated[bool, typer.Option(help="End the snooze now instead")] = False,
        config: ConfigOpt = None,
        to_file: ToFileOpt = None,
        at: AtOpt = None,
    ) -> None:
        """Mute one detector for one account, published as the console publishes it. The
        console's store does not learn of it: prefer the console, which audits it."""
        from streams.engine.build import DETECTOR_NAMES
        from streams.runtime.control import snooze_record

        if not account.strip() or not detector.strip():
            raise fail("a snooze needs --account and --detector")
        if detector not in DETECTOR_NAMES:
            raise fail(
                f"--detector {detector}: not a detector; use one of {', '.join(DETECTOR_NAMES)}"
            )
        if not lift and not reason.strip():
            raise fail("a snooze needs a --reason")
        now = time.time()
        until = now if lift else now + days * 86_400
        key, _ = snooze_record(account, detector, until, reason)
        body = {"account_id": account, "detector": detector, "until_epoch": until}
        body["reason"] = reason or f"lifted by {getpass.getuser()}"
        if to_file is not None:
            body["kind"] = "snooze"
        emit(config, "snoozes", key, body, to_file, at)


def emit(
    config: Path | None, topic: str, key: bytes, record: dict, to_file: Path | None, at: Any
) -> None:
    import orjson

    from streams.replay.control import parse_at
    from streams.runtime.control import ControlError

    if to_file is not None:
        if at is None:
            raise fail("--to-file needs --at: the event time the record applies from")
        try:
            line = {**record, "at": parse_at(at)}
        except ControlError as exc:
            raise fail(f"--at: {exc}") from None
        with to_file.open("ab") as fh:
            fh.write(orjson.dumps(line) + b"\n")
        typer.echo(f"appended a {record.get('kind', 'snooze')} record to {to_file}")
        return
    cfg = load_cli_config(config)
    kc = cfg.kafka
    name = {"control": kc.control_topic, "snoozes": kc.snoozes_topic}[topic]
    try:
        _publish(kc, name, key, orjson.dumps(record))
    except Exception as exc:  # the broker away, no permission: one line, no traceback
        raise fail(f"cannot publish to {name} at {kc.bootstrap_servers}: {exc}") from None
    typer.echo(f"published to {name}: {orjson.dumps(record).decode()}")


def emit_model(
    model: Path, action: str, config: Path | None, to_file: Path | None = None, at: Any = None
) -> None:
    """Check a model, then publish its promote or rollback record (or append it to a file)."""
    from models.verify import ModelRejected, check_model
    from streams.runtime.control import ControlError, model_record

    try:
        check_model(model)
    except ModelRejected as exc:
        raise fail(str(exc)) from None

    try:
        rec = model_record(str(model), action, getpass.getuser())
    except ControlError as exc:
        raise fail(str(exc)) from None
    emit(config, "control", b"model", rec, to_file, at)


def _publish(kc: Any, topic: str, key: bytes, value: bytes) -> None:
    from kafka import KafkaProducer

    from streams.kafka.settings import WorkerSettings
    from streams.kafka.topics import ensure_topics, topic_specs
    from streams.runtime.kafka_client import kafka_python_options

    # Created compacted here if no worker has started yet.
    specs = [s for s in topic_specs(kc, WorkerSettings()) if s.name == topic]
    ensure_topics(kc, specs)
    producer = KafkaProducer(acks="all", **kafka_python_options(kc))
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)
