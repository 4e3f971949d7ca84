"""Console users: salted PBKDF2 password hashes and hashed API tokens in the store."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from console.schema import users
from console.sessions import revoke_user_sessions
from console.store import AlertStore

ROLES = ("viewer", "analyst")
PBKDF2_ROUNDS = 240_000


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_write(self) -> bool:
        return self.role == "analyst"


def hash_password(password: str, rounds: int = PBKDF2_ROUNDS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), rounds)
    return f"pbkdf2_sha256${rounds}${salt}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, rounds, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    return hmac.compare_digest(got.hex(), digest)


def _token_hash(token: str) -> str:
    # Tokens are long random strings, so a fast hash is enough to keep them unreadable at rest.
    return hashlib.sha256(token.encode()).hexdigest()


def check_user(name: str, role: str) -> None:
    """Raise ValueError naming what is wrong with a user's name or role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 200:
        raise ValueError("user name must be 1 to 200 characters")


def add_user(store: AlertStore, name: str, role: str, password: str) -> None:
    check_user(name, role)
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    row = {"role": role, "password_hash": hash_password(password)}
    with store.engine.begin() as conn:
        exists = conn.execute(select(users.c.name).where(users.c.name == name)).first()
        if exists:
            conn.execute(update(users).where(users.c.name == name).values(**row))
            # A new password (or role) signs the user out everywhere, in the same
            # transaction, so a stolen session does not outlive the password change.
            revoke_user_sessions(conn, name)
        else:
            conn.execute(insert(users).values(name=name, created_at=time.time(), **row))


def remove_user(store: AlertStore, name: str) -> bool:
    with store.engine.begin() as conn:
        revoke_user_sessions(conn, name)
        return conn.execute(delete(users).where(users.c.name == name)).rowcount > 0


def list_users(store: AlertStore) -> list[User]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(users.c.name, users.c.role).order_by(users.c.name))
        return [User(name=r.name, role=r.role) for r in rows]


def issue_token(store: AlertStore, name: str) -> str:
    """A new API token for `name`, replacing any earlier one; shown once."""
    token = "vgl_" + secrets.token_urlsafe(32)
    with store.engine.begin() as conn:
        n = conn.execute(
            update(users).where(users.c.name == name).values(token_hash=_token_hash(token))
        ).rowcount
    if not n:
        raise ValueError(f"no user {name!r}")
    return token


def authenticate_password(store: AlertStore, name: str, password: str) -> User | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        # Spend the same time as a real check so timing does not reveal which names exist.
        check_password(password, _DUMMY_HASH)
        return None
    return User(row.name, row.role) if check_password(password, row.password_hash) else None


def authenticate_token(store: AlertStore, token: str) -> User | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(users.c.name, users.c.role).where(users.c.token_hash == _token_hash(token))
        ).first()
    return User(row.name, row.role) if row else None


def get_user(store: AlertStore, name: str) -> User | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(users.c.name, users.c.role).where(users.c.name == name)).first()
    return User(row.name, row.role) if row else None


_DUMMY_HASH = hash_password("not-a-password", rounds=PBKDF2_ROUNDS)
