"""Reading a configuration: a TOML file or a dict into the frozen dataclasses of
config.py, then the VIGIL_* environment overrides (`from_env`, at the edge only). Every
result is checked (config_checks.validate)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from streams.core.config import ConfigError, VigilConfig
from streams.core.config_checks import validate


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected nothing")
        return None
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is Path and isinstance(value, str | Path):
        return Path(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        what = where or "config"  # the top level has no path of its own
        raise ConfigError(f"{what}: unknown key(s) {', '.join(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def config_from_dict(data: dict) -> VigilConfig:
    hook = data.get("webhook")
    if isinstance(hook, dict) and "secret" in hook:
        raise ConfigError("webhook.secret: not in the file; set the variable named by secret_env")
    cfg = _build(VigilConfig, data, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path | None) -> VigilConfig:
    if path is None:
        return VigilConfig()
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory")
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return config_from_dict(data)


ENV_OVERRIDES = {
    "VIGIL_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "VIGIL_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "VIGIL_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "VIGIL_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "VIGIL_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "VIGIL_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "VIGIL_STORE_URL": (None, "store_url"),
    "VIGIL_MODEL_PATH": (None, "model_path"),
    "VIGIL_CONSOLE_SECRET": ("console", "secret"),
    "VIGIL_HASH_KEY": ("engine", "hash_key"),
}


def from_env(cfg: VigilConfig, environ: dict[str, str] | None = None) -> VigilConfig:
    """Apply VIGIL_* environment overrides; called once, by the CLI."""
    env = os.environ if environ is None else environ
    for var, (section, key) in ENV_OVERRIDES.items():
        if var not in env:
            continue
        try:
            env[var].encode("utf-8")
        except UnicodeEncodeError:  # bytes the locale could not decode, kept as surrogates
            raise ConfigError(f"{var}: not UTF-8 text") from None
        if section is None:
            cfg = dataclasses.replace(cfg, **{key: env[var]})
        else:
            sub = _coerce(
                {**dataclasses.asdict(getattr(cfg, section)), key: env[var]},
                type(getattr(cfg, section)),
                var,
            )
            cfg = dataclasses.replace(cfg, **{section: sub})
    if cfg.webhook.url and env.get(cfg.webhook.secret_env):
        hook = dataclasses.replace(cfg.webhook, secret=env[cfg.webhook.secret_env])
        cfg = dataclasses.replace(cfg, webhook=hook)
    validate(cfg)
    return cfg
