"""`vigil models`: the model registry. Files from models/registry.py, records from
console/registry.py; every change is checked first and audited.

A model is named on the command line by its directory, or, with a store, by a registered
version (id or unique prefix) or a stage (`champion`, `shadow`): `resolve_model` does that
for every command that takes a model.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from streams.cli import checks
from streams.cli.common import ConfigOpt, command_group, fail, load_cli_config

REGISTRY_ENV = "VIGIL_MODEL_REGISTRY"
DEFAULT_REGISTRY = Path("data/models")

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store URL or SQLite path (default: the config's store_url)"),
]
WhyOpt = Annotated[str, typer.Option("--why", help="Why: recorded with the change and audited")]
PublishOpt = Annotated[
    bool,
    typer.Option(help="Also publish it on the control topic: running workers switch to it"),
]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who makes the change (default: $USER)")
]


def actor_name(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no passwd entry, as in some containers
        return "unknown"


def open_registry_store(store: str | None, config: Path | None, create: bool = False):  # type: ignore[no-untyped-def]
    """The store the registry lives in. Only `add` may create it: reading or changing a
    registry in an SQLite file that is not there would make an empty one in its place."""
    from console.store import open_store

    url = store or load_cli_config(config).store_url
    if store and config is not None:
        load_cli_config(config)  # a config given is checked, though --store overrides it
    if not url:
        raise fail("the model registry lives in the store: give --store or set store_url")
    option = "--store" if store else "store_url"
    full = checks.store_url(url, option)
    if not create:
        checks.existing_store(full, f"{option} {url}", "`vigil models add` creates it")
    return open_store(full)


def _why(why: str) -> str:
    why = why.strip()
    if not why:
        raise fail("--why must say why")
    return why


def verified(path: str | Path, what: str) -> None:
    """Refuse, with one line, a model that fails the checks of models/verify.py."""
    from models.verify import ModelRejected, check_model
    from streams.features.window import FEATURES

    try:
        check_model(path, tuple(FEATURES))
    except ModelRejected as exc:
        raise fail(f"{what}: {exc}") from None


def _usable(row: dict, what: str) -> None:
    """A registered version's files: unchanged since registration, and passing the checks."""
    from models.registry import intact

    problem = intact(Path(row["path"]), row["version"])
    if problem:
        raise fail(f"{what}: {problem}")
    verified(row["path"], what)


def resolve_model(spec: str, store_url: str | None, option: str) -> tuple[str, str]:
    """(model directory, label) for a directory, or a registered version or stage when a
    store is given; the model is verified either way."""
    p = Path(spec)
    if p.exists():
        verified(p, f"{option} {spec}")
        return str(p), spec
    if not store_url:
        raise fail(f"{option} {spec}: no such model directory (registry names need a store)")
    from console.registry import RegistryError, resolve
    from console.store import open_store

    with open_store(checks.store_url(store_url)) as db:
        try:
            row = resolve(db, spec)
        except RegistryError as exc:
            raise fail(f"{option} {spec}: {exc}") from None
    _usable(row, f"{option} {spec}")
    return row["path"], f"{row['version']} ({row['model_version']}, {row['stage']})"


def add(
    path: Annotated[Path, typer.Argument(help="Model directory (classifier.onnx, card, .skl.pkl)")],
    why: WhyOpt,
    parent: Annotated[str | None, typer.Option(help="The version this one derives from")] = None,
    registry: Annotated[
        Path | None,
        typer.Option(help=f"Where version folders live (default ${REGISTRY_ENV} or data/models)"),
    ] = None,
    store: StoreOpt = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check a model and register it as a candidate under the hash of its files."""
    from console.registry import RegistryError, add_version, resolve
    from models.registry import card_summary, store_files

    why = _why(why)
    verified(path, f"cannot add {path}")
    root = registry or Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)
    checks.output_dir(root, "--registry")
    with open_registry_store(store, config, create=True) as db:
        try:
            parent_v = resolve(db, parent)["version"] if parent else None
            stored = store_files(path, root.resolve())
            summary = card_summary(stored.path)
            row = add_version(
                db,
                stored.version,
                summary["model_version"],
                str(stored.path),
                actor_name(actor),
                why,
                summary,
                parent_v,
            )
        except (RegistryError, ValueError) as exc:
            raise fail(str(exc)) from None
    typer.echo(f"added {row['version']} ({row['model_version']}) as candidate: {row['path']}")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt(x: object) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def list_models(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Every registered version, newest first, with its stage and held-out macro figures."""
    from console.registry import list_versions

    with open_registry_store(store, config) as db:
        rows = list_versions(db)
    if not rows:
        typer.echo("no registered models (add one with `vigil models add DIR --why TEXT`)")
        return
    head = ("version", "stage", "model", "parent", "added", "by", "precision", "recall", "why")
    table = [
        (
            r["version"],
            r["stage"],
            r["model_version"],
            r["parent"] or "–",
            _when(r["created_at"]),
            r["created_by"],
            _fmt(r["metrics"].get("macro_precision")),
            _fmt(r["metrics"].get("macro_recall")),
            r["why"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [head, *table]) for i in range(len(head) - 1)]
    for row in [head, *table]:
        typer.echo(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )


def show(
    version: Annotated[str, typer.Argument(help="Version id, prefix, champion or shadow")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """One version: its record, held-out figures per class and stage history."""
    from console.registry import RegistryError, history, resolve

    with open_registry_store(store, config) as db:
        try:
            row = resolve(db, version)
        except RegistryError as exc:
            raise fail(str(exc)) from None
        events = history(db, row["version"])
    m = row["metrics"]
    for k in ("version", "model_version", "stage", "parent", "path", "created_by", "why"):
        typer.echo(f"{k}: {row[k] if row[k] is not None else '–'}")
    typer.echo(f"created_at: {_when(row['created_at'])}")
    typer.echo(f"features: {m.get('features')}, held-out: {m.get('holdout') or '–'}")
    typer.echo(
        f"macro precision {_fmt(m.get('macro_precision'))}, "
        f"macro recall {_fmt(m.get('macro_recall'))}"
    )
    for c, v in (m.get("per_class") or {}).items():
        typer.echo(
            f"  {c:<20} precision {_fmt(v.get('precision'))}  recall {_fmt(v.get('recall'))}"
        )
    typer.echo("history:")
    for e in reversed(events):
        extra = f" (replacing {e['previous']})" if e["previous"] else ""
        typer.echo(
            f"  {_when(e['ts'])} {e['actor']}: {e['action']} -> {e['stage']}{extra}: {e['why']}"
        )


def promote(
    version: Annotated[str, typer.Argument(help="Version id or unique prefix")],
    why: WhyOpt,
    stage: Annotated[
        str, typer.Option(help="champion (serves alerts) or shadow (runs beside it)")
    ] = "champion",
    store: StoreOpt = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    publish: PublishOpt = False,
) -> None:
    """Verify a version, then make it the champion or the shadow. A failing model is
    refused and the current champion stays."""
    from console.registry import RegistryError, resolve
    from console.registry import promote as run

    why = _why(why)
    if stage not in ("champion", "shadow"):
        raise fail(f"--stage {stage}: use champion or shadow")
    with open_registry_store(store, config) as db:
        try:
            row = resolve(db, version)
            current = _stage_holder(db, "champion")
            _usable(row, f"cannot promote {row['version']} (champion {current} stays)")
            res = run(db, row["version"], actor_name(actor), why, stage)
        except RegistryError as exc:
            raise fail(str(exc)) from None
    was = f", replacing {res['previous']}" if res["previous"] else ""
    typer.echo(f"{res['version']} is now {res['stage']}{was}")
    if publish and res["stage"] == "champion":
        from streams.cli.control import emit_model

        emit_model(Path(row["path"]), "promote", config)


def _stage_holder(db, stage: str) -> str:  # type: ignore[no-untyped-def]
    from console.registry import RegistryError, resolve

    try:
        return resolve(db, stage)["version"]
    except RegistryError:
        return "none"


def rollback(
    why: WhyOpt,
    store: StoreOpt = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    publish: PublishOpt = False,
) -> None:
    """Retire the champion and restore the one it replaced (verified first)."""
    from console.registry import RegistryError, get_version, rollback_target
    from console.registry import rollback as run

    why = _why(why)
    with open_registry_store(store, config) as db:
        try:
            current, target = rollback_target(db)
            row = get_version(db, target)
            assert row is not None  # history only names registered versions
            _usable(row, f"cannot roll back to {target} ({current} stays champion)")
            res = run(db, actor_name(actor), why)
        except RegistryError as exc:
            raise fail(str(exc)) from None
    typer.echo(f"rolled back: {res['version']} is champion again, {res['previous']} retired")
    if publish:
        from streams.cli.control import emit_model

        emit_model(Path(row["path"]), "rollback", config)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    models = command_group(help="The model registry: add, list, show, promote, roll back.")
    models.command("add")(add)
    models.command("list")(list_models)
    models.command("show")(show)
    models.command("promote")(promote)
    models.command("rollback")(rollback)
    app.add_typer(models, name="models", no_args_is_help=True)


def shadow_of(cfg, model: str):  # type: ignore[no-untyped-def]
    """The engine's Shadow for a model directory; one line if it cannot be loaded."""
    from models.verify import ONNX, model_dir
    from streams.core.config import ConfigError
    from streams.engine.engine import ModelError
    from streams.engine.shadow import build_shadow

    try:
        return build_shadow(cfg, str(model_dir(model) / ONNX))
    except (ModelError, ConfigError) as exc:
        raise fail(f"--shadow-model {model}: {exc}") from None


def is_registry_name(spec: str) -> bool:
    """champion, shadow or a version id: not something that looks like a path."""
    return bool(spec) and "/" not in spec and "\\" not in spec and not spec.endswith(".onnx")


def registry_model(cfg, store_url: str):  # type: ignore[no-untyped-def]
    """The config with a registry name in `model_path` (VIGIL_MODEL_PATH=champion) turned
    into that version's verified model file; any other model_path is left as it is."""
    import dataclasses

    from models.verify import ONNX

    spec = cfg.model_path
    if not is_registry_name(spec) or Path(spec).exists():
        return cfg
    path, _ = resolve_model(spec, store_url, "model_path")
    return dataclasses.replace(cfg, model_path=str(Path(path) / ONNX))
