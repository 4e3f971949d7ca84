"""Refuse to serve the console with a secret anyone could know.

`vigil console` calls `console_secret` and `check_store_url` before it listens. Each
raises `StartupError` with one line that says what to set; the CLI prints it and exits.

- `VIGIL_CONSOLE_SECRET` set but empty, a placeholder (`change-me`, `<...>`, `${...}`) or
  shorter than 32 characters: refused.
- Not set at all: a fresh random key per process is fine on a loopback address (sessions
  end at restart), but a console listening on any other address must have one, so that a
  deployment that forgot it fails at start instead of running on a default.
- A PostgreSQL store URL whose password is a well-known default: refused.
"""

from __future__ import annotations

import ipaddress
import secrets

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIN_SECRET_CHARS = 32
SECRET_ENV = "VIGIL_CONSOLE_SECRET"
HINT = "use 32+ random characters, e.g. `openssl rand -hex 32`"
# Whole values that shipped as defaults here or are the usual first guesses.
KNOWN_DEFAULTS = {
    "admin",
    "changeit",
    "default",
    "password",
    "postgres",
    "secret",
    "test",
    "vigil",
    "vigil-local",
}
# Fragments that mark a value as a template someone forgot to fill in.
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "placeholder", "${")


class StartupError(ValueError):
    """A setting the console will not run with; the message is one line."""


def looks_like_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    template = lowered.startswith("<") and lowered.endswith(">")  # e.g. <your-secret>
    return template or lowered in KNOWN_DEFAULTS or any(m in lowered for m in PLACEHOLDER_MARKS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_secret(value: str | None, host: str) -> bytes:
    """The session-signing key from the environment's value, or a per-process one."""
    if value is None:
        if is_loopback(host):
            return secrets.token_bytes(32)
        raise StartupError(
            f"{SECRET_ENV} is not set and the console listens on {host}; set it ({HINT})"
        )
    text = value.strip()
    if not text:
        raise StartupError(f"{SECRET_ENV} is empty; {HINT}")
    if looks_like_placeholder(text):
        raise StartupError(f"{SECRET_ENV} is a placeholder; {HINT}")
    if len(text) < MIN_SECRET_CHARS:
        raise StartupError(f"{SECRET_ENV} is shorter than {MIN_SECRET_CHARS} characters; {HINT}")
    return text.encode()


def check_store_url(url: str) -> None:
    """Refuse a database password that is a shipped default or a placeholder."""
    if "://" not in url:
        return  # a plain SQLite path: no password
    try:
        password = make_url(url).password
    except ArgumentError:
        raise StartupError("the store URL is not a valid database URL") from None
    if password is not None and looks_like_placeholder(str(password)):
        raise StartupError(
            "the store URL's database password is a default or placeholder; set a real one"
        )
