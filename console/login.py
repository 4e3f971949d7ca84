"""Password sign-in shared by the login form and `POST /api/session`.

The attempt is booked with the limiter before the password hash runs (console/limiter.py);
a right password starts a server-side session (console/sessions.py).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request
from fastapi.responses import Response

from console import triage
from console.auth import LOGIN_COOKIE, SESSION_COOKIE, AuthError, Principal
from console.limiter import LoginLimiter
from console.sessions import create_session
from console.store import AlertStore
from console.users import User

# No user name is longer (add_user refuses it) and no sane password is; longer ones are
# counted as failures without spending a password hash on them.
MAX_NAME_CHARS = 200
MAX_PASSWORD_CHARS = 1024
PasswordCheck = Callable[[AlertStore, str, str], User | None]


def login_attempt(request: Request, name: str, password: str, check: PasswordCheck) -> Principal:
    """Check a password under the limiter; the attempt is booked before the hash runs."""
    limiter: LoginLimiter = request.app.state.limiter
    client = request.client.host if request.client else ""
    keys = [limiter.key("ip", client), limiter.key("user", name)]
    ticket, wait = limiter.acquire(keys)
    if ticket is None:
        raise HTTPException(
            429, "too many failed sign-ins; try again later", headers={"Retry-After": str(wait)}
        )
    store = request.app.state.store
    fits = len(name) <= MAX_NAME_CHARS and len(password) <= MAX_PASSWORD_CHARS
    user = check(store, name, password) if fits else None
    if user is None:
        _audit_login(store, name[:MAX_NAME_CHARS], "login_failed", client)
        raise AuthError(401, "wrong user name or password")
    limiter.succeed(ticket)
    _audit_login(store, user.name, "login", client)
    return Principal(user, "session", "")


def start_session(request: Request, p: Principal) -> tuple[Principal, str]:
    """Store a new session for `p`: the principal with its CSRF nonce, and the cookie."""
    auth = request.app.state.auth
    cookie, nonce = create_session(request.app.state.store, auth.secret, p.name, auth.session_ttl_s)
    return Principal(p.user, "session", nonce), cookie


def set_session_cookie(request: Request, resp: Response, cookie: str) -> None:
    secure = request.app.state.auth.cookie_secure
    resp.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=secure)
    resp.delete_cookie(LOGIN_COOKIE)  # the pre-session nonce has done its job


def _audit_login(store: AlertStore, name: str, action: str, client: str) -> None:
    with store.engine.begin() as conn:
        triage.audit(conn, name, action, name, {"client": client})
