"""Who is asking: session cookies, API tokens, a trusted proxy header; roles and CSRF.

- Password login creates a server-side session (console/sessions.py) and sets its signed
  cookie (HttpOnly, SameSite=Lax); logout and a password change revoke it.
- The login form carries its own CSRF token, bound to a pre-session cookie, so another
  site cannot sign a browser in to an account of the attacker's (login CSRF).
- `Authorization: Bearer <token>` authenticates API clients; no cookie, so no CSRF risk.
- Behind an authenticating proxy, a configured header names the user, honoured only from
  the proxy's own addresses.
Every state-changing request made with a cookie or proxy header must carry a CSRF token
derived from the session, in the `X-CSRF-Token` header or a `csrf_token` form field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from console.sessions import read_session
from console.store import AlertStore
from console.users import ROLES, User, authenticate_token, get_user

SESSION_COOKIE = "vigil_session"
CSRF_COOKIE = "vigil_csrf"
LOGIN_COOKIE = "vigil_login"
_NONCE = re.compile(r"[0-9a-f]{32}")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class AuthSettings:
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    session_ttl_s: int = 12 * 3600
    cookie_secure: bool = False
    trusted_header: str = ""  # e.g. X-Forwarded-User; empty: proxy mode off
    trusted_role_header: str = ""  # optional header carrying viewer|analyst
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    login_max_failures: int = 5
    login_window_s: int = 300
    login_max_keys: int = 10_000  # limiter memory bound: addresses and names tracked


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # session | token | proxy
    nonce: str  # binds the CSRF token to this session

    @property
    def name(self) -> str:
        return self.user.name


class AuthError(HTTPException):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def csrf_token(settings: AuthSettings, p: Principal) -> str:
    return _sign(settings.secret, f"csrf:{p.via}:{p.name}:{p.nonce}")


def identify(request: Request) -> Principal | None:
    settings: AuthSettings = request.app.state.auth
    store: AlertStore = request.app.state.store
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = authenticate_token(store, header[7:].strip())
        if user is None:
            raise AuthError(401, "invalid token")
        return Principal(user, "token", "")
    if settings.trusted_header:
        proxied = request.headers.get(settings.trusted_header, "").strip()
        client = request.client.host if request.client else ""
        if proxied and client in settings.trusted_proxies:
            user = get_user(store, proxied)
            if user is None:
                role = (
                    request.headers.get(settings.trusted_role_header, "viewer")
                    if settings.trusted_role_header
                    else "viewer"
                )
                user = User(proxied, role if role in ROLES else "viewer")
            # The middleware keeps a random per-browser nonce in a cookie for proxy mode.
            nonce = getattr(request.state, "csrf_nonce", "") or request.cookies.get(CSRF_COOKIE, "")
            return Principal(user, "proxy", nonce)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = read_session(store, settings.secret, cookie)
        if found is not None:
            return Principal(User(found.user_name, found.role), "session", found.csrf_nonce)
    return None


def login_nonce(request: Request) -> tuple[str, bool]:
    """The browser's pre-session nonce from its cookie, or a fresh one: (nonce, is_new)."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if _NONCE.fullmatch(nonce):
        return nonce, False
    return secrets.token_hex(16), True


def login_csrf_token(settings: AuthSettings, nonce: str) -> str:
    return _sign(settings.secret, f"login:{nonce}")


def login_csrf_ok(request: Request, sent: str) -> bool:
    """True if the login form's token matches the nonce cookie this browser holds."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not _NONCE.fullmatch(nonce) or not sent:
        return False
    return hmac.compare_digest(sent, login_csrf_token(request.app.state.auth, nonce))


async def check_csrf(request: Request, p: Principal) -> None:
    if p.via == "token" or request.method not in UNSAFE_METHODS:
        return
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get("csrf_token", ""))
    expected = csrf_token(request.app.state.auth, p)
    if not p.nonce or not sent or not hmac.compare_digest(sent, expected):
        raise AuthError(403, "missing or invalid CSRF token")


async def require_viewer(request: Request) -> Principal:
    p = identify(request)
    if p is None:
        raise AuthError(401, "sign in first")
    request.state.principal = p
    return p


async def require_analyst(request: Request) -> Principal:
    p = await require_viewer(request)
    await check_csrf(request, p)
    if not p.user.can_write:
        raise AuthError(403, "the analyst role is needed for this")
    return p
