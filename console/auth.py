"""Who is asking: session cookies, API tokens, a trusted proxy header; roles and CSRF.

- Password login sets an HMAC-signed session cookie (HttpOnly, SameSite=Lax).
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
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from console.store import AlertStore
from console.users import ROLES, User, authenticate_token, get_user

SESSION_COOKIE = "vigil_session"
CSRF_COOKIE = "vigil_csrf"
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


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def make_session(settings: AuthSettings, name: str) -> tuple[str, str]:
    """A signed session cookie for `name`, and the nonce its CSRF token is bound to."""
    nonce = secrets.token_hex(16)
    payload = {"u": name, "exp": int(time.time()) + settings.session_ttl_s, "n": nonce}
    body = _b64(json.dumps(payload).encode())
    return f"{body}.{_sign(settings.secret, body)}", nonce


def read_session(settings: AuthSettings, cookie: str) -> tuple[str, str] | None:
    """(user name, nonce) from a valid, unexpired session cookie."""
    body, _, sig = cookie.partition(".")
    if not body or not hmac.compare_digest(sig, _sign(settings.secret, body)):
        return None
    try:
        data = json.loads(_unb64(body))
    except ValueError:
        return None
    if int(data.get("exp", 0)) < time.time():
        return None
    return str(data["u"]), str(data["n"])


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
        found = read_session(settings, cookie)
        if found:
            user = get_user(store, found[0])
            if user is not None:
                return Principal(user, "session", found[1])
    return None


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


class LoginLimiter:
    """Counts failed logins per client address and per user name in a sliding window."""

    def __init__(self, max_failures: int, window_s: int) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, keys: list[str]) -> int:
        """Seconds to wait if any key is over the limit, else 0."""
        now = time.time()
        with self._lock:
            waits = [
                int(q[0] + self.window_s - now) + 1
                for q in (self._recent(k, now) for k in keys)
                if len(q) >= self.max_failures
            ]
        return max(waits, default=0)

    def fail(self, keys: list[str]) -> None:
        now = time.time()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def reset(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)
