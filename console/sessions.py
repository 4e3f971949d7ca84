"""Server-side sign-in sessions kept in the store.

The cookie is `<token>.<hmac>`: a random 32-byte token, signed with the console secret so
that a cookie from another deployment (or forged without the secret) is refused before any
database lookup. The store keeps only the token's SHA-256, the user, the CSRF nonce and the
expiry. A session is valid only while its row exists, so:

- logout deletes the row, and the old cookie stops working at once;
- a password change, role change or user removal deletes every row of that user;
- expired rows are purged whenever someone signs in, which keeps the table small.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select

from console.schema import sessions, users
from console.store import AlertStore

# Cookies longer than this are not ours; refusing them early keeps hashing cheap.
MAX_COOKIE_CHARS = 200


@dataclass(frozen=True)
class Session:
    user_name: str
    role: str
    csrf_nonce: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, b"session:" + body.encode(), hashlib.sha256).digest())


def _id_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    store: AlertStore, secret: bytes, user_name: str, ttl_s: float
) -> tuple[str, str]:
    """A new session for `user_name`: (cookie value, CSRF nonce)."""
    token = _b64(secrets.token_bytes(32))
    nonce = secrets.token_hex(16)
    now = time.time()
    with store.engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        conn.execute(
            insert(sessions).values(
                id_hash=_id_hash(token),
                user_name=user_name,
                csrf_nonce=nonce,
                created_at=now,
                expires_at=now + ttl_s,
            )
        )
    return f"{token}.{_sign(secret, token)}", nonce


def _token(secret: bytes, cookie: str) -> str | None:
    """The token of a well-formed cookie signed with `secret`, else None."""
    if len(cookie) > MAX_COOKIE_CHARS:
        return None
    token, _, sig = cookie.partition(".")
    if not token or not sig or not hmac.compare_digest(sig, _sign(secret, token)):
        return None
    return token


def read_session(store: AlertStore, secret: bytes, cookie: str) -> Session | None:
    """The live session behind a cookie, with its user's current role; None if revoked."""
    token = _token(secret, cookie)
    if token is None:
        return None
    with store.engine.connect() as conn:
        row = conn.execute(
            select(sessions.c.user_name, sessions.c.csrf_nonce, sessions.c.expires_at, users.c.role)
            .join(users, users.c.name == sessions.c.user_name)
            .where(sessions.c.id_hash == _id_hash(token))
        ).first()
    if row is None or row.expires_at < time.time():
        return None
    return Session(row.user_name, row.role, row.csrf_nonce, row.expires_at)


def end_session(store: AlertStore, secret: bytes, cookie: str) -> bool:
    """Delete the session behind a cookie (logout). True if there was one."""
    token = _token(secret, cookie)
    if token is None:
        return False
    with store.engine.begin() as conn:
        return (
            conn.execute(delete(sessions).where(sessions.c.id_hash == _id_hash(token))).rowcount > 0
        )


def revoke_user_sessions(conn: Connection, user_name: str) -> int:
    """Delete every session of a user, inside the caller's transaction."""
    return conn.execute(delete(sessions).where(sessions.c.user_name == user_name)).rowcount


def count_sessions(store: AlertStore, user_name: str) -> int:
    with store.engine.connect() as conn:
        rows = conn.execute(select(sessions.c.id_hash).where(sessions.c.user_name == user_name))
        return len(rows.all())
