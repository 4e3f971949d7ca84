"""Arguments checked before any work starts: each problem is one line that names it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

from streams.cli.common import fail


def input_file(path: str) -> None:
    if path == "-":
        return
    p = Path(path)
    if not p.exists():
        raise fail(f"input {path} does not exist")
    if p.is_dir():
        raise fail(f"input {path} is a directory; give a .jsonl or .jsonl.gz file, or - for stdin")
    if not os.access(p, os.R_OK):
        raise fail(f"input {path}: not readable")


def output_file(path: Path | None, option: str, reads: Iterable[str | Path] = ()) -> None:
    """A file the run will write: not a directory, in a folder that exists or can be made,
    and none of the files it `reads` (opening it to write would empty that input first)."""
    if path is None:
        return
    if path.is_dir():
        raise fail(f"{option} {path} is a directory; give a file path")
    for r in reads:
        if str(r) != "-" and path.exists() and Path(r).exists() and os.path.samefile(path, r):
            raise fail(f"{option} {path} is also an input of this run; give another path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise fail(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise fail(f"{option} {path}: not writable")
    if parent == path.parent and not path.exists():
        # os.access says yes to root everywhere, /proc and read-only mounts included: only
        # making the file shows it can be made.
        try:
            path.touch()
            path.unlink()
        except OSError as exc:
            raise fail(f"{option} {path}: cannot be written ({exc.strerror})") from None


def output_dir(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise fail(f"{option} {path} is a file; give a directory")
    output_file(path / "x", option)


def json_file(path: Path | None, option: str) -> object:
    if path is None:
        return None
    if path.is_dir():
        raise fail(f"{option} {path} is a directory; give a JSON file")
    if not path.is_file():
        raise fail(f"{option} {path} does not exist")
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise fail(f"{option} {path} is not JSON: {exc}") from None


def store_url(url: str, option: str = "--store") -> str:
    from console.store import normalize_url, url_problem

    full = normalize_url(url)
    problem = url_problem(full)
    if problem:
        raise fail(f"{option} {url}: {problem}")
    return full


def existing_store(url: str, named: str, how: str) -> None:
    """An SQLite store that must be there already: opening one that is not creates it,
    empty. `named` is what the user gave; `how` says what creates the store."""
    from console.store import sqlite_file

    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise fail(f"{named}: no store at {path} ({how})")


def detectors(cfg, without_classifier: bool) -> dict:  # type: ignore[no-untyped-def]
    """The engine's detectors, built before the run so that a model that cannot be loaded
    stops it with one line, unless the user asked to run without the classifier."""
    from streams.core.config import ConfigError
    from streams.engine.engine import ModelError, build_detectors

    try:
        return build_detectors(cfg, classifier=not without_classifier)
    except ModelError as exc:
        raise fail(f"{exc} (pass --without-classifier to run on the other detectors)") from None
    except ConfigError as exc:
        raise fail(str(exc)) from None


def webhook(cfg, dead_letters: Path | None = None, runner: str = "worker") -> None:  # type: ignore[no-untyped-def]
    """A configured webhook can sign, and (in replay) has somewhere to put what it cannot
    deliver."""
    from streams.core.config_checks import webhook_secret_problem

    problem = webhook_secret_problem(cfg)
    if problem:
        raise fail(problem)
    if runner == "replay" and cfg.webhook.url and dead_letters is None:
        raise fail("webhook.url is set: give --dead-letters to keep the alerts it cannot deliver")


def model_option(cfg, model: Path):  # type: ignore[no-untyped-def]
    """`--model DIR|FILE`: the config with that model; a missing path is one line."""
    import dataclasses

    if not model.exists():
        raise fail(f"--model {model} does not exist")
    if model.is_dir() and not (model / "classifier.onnx").is_file():
        raise fail(f"--model {model}: no classifier.onnx in that directory")
    return dataclasses.replace(cfg, model_path=str(model))


def kafka_libraries(env: Mapping[str, str] = os.environ) -> None:
    """The worker runs on private names of Faust, mode and aiokafka (streams/kafka/
    internals.py), pinned for the versions in constraints.txt: any other stops it here,
    or only warns when VIGIL_ALLOW_UNTESTED_KAFKA_LIBS=1."""
    import typer

    from streams.kafka.internals_versions import ALLOW_ENV, UnsupportedVersions, check_versions

    try:
        check_versions()
    except UnsupportedVersions as exc:
        if env.get(ALLOW_ENV) != "1":
            raise fail(str(exc)) from None
        typer.secho(f"warning: {exc}", err=True, fg=typer.colors.YELLOW)
