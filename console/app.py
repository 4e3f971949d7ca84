"""The console's FastAPI application: server-rendered pages plus the JSON API.

`create_app(store, ...)` wires everything; `vigil console` serves it with uvicorn.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from console.auth import CSRF_COOKIE, AuthSettings, LoginLimiter
from console.labels import LabelPublisher, NullPublisher
from console.store import AlertStore

HERE = Path(__file__).parent
# Scripts are never needed: the pages are plain HTML forms and inline SVG, so a payload
# that slipped past escaping still could not run.
CSP = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def account_url(account_id: str) -> str:
    return "/accounts/" + quote(account_id, safe="")


def alert_url(alert_id: str) -> str:
    return "/alerts/" + quote(alert_id, safe="")


def case_url(account_id: str) -> str:
    return "/cases/" + quote(account_id, safe="")


def fmt_ts(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    days, rem = divmod(int(seconds), 86_400)
    return f"{days} d {rem // 3600} h" if days else f"{rem // 3600} h {rem % 3600 // 60} min"


def fmt_num(value: object) -> str:
    """Numbers from events for display; anything else (None, text) as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def make_templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.filters["num"] = fmt_num
    t.env.globals.update(
        account_url=account_url,
        alert_url=alert_url,
        case_url=case_url,
        fmt_ts=fmt_ts,
        fmt_age=fmt_age,
        urlencode=urlencode,
    )
    return t


def create_app(
    store: AlertStore,
    auth: AuthSettings | None = None,
    publisher: LabelPublisher | None = None,
    default_threshold: float = 0.5,
    thresholds: dict[str, float] | None = None,
    sla_s: dict[str, float] | None = None,
) -> FastAPI:
    from console import api, pages

    app = FastAPI(
        title="Vigil console",
        version="1",
        description="Alert queue, account investigation and verdicts. Every page has a JSON "
        "twin under /api; authenticate with `Authorization: Bearer <token>` "
        "(`vigil console-user token NAME`) or a session cookie plus `X-CSRF-Token`.",
    )
    app.state.store = store
    app.state.auth = auth or AuthSettings()
    app.state.publisher = publisher or NullPublisher()
    app.state.limiter = LoginLimiter(
        app.state.auth.login_max_failures, app.state.auth.login_window_s
    )
    app.state.templates = make_templates()
    app.state.default_threshold = default_threshold
    app.state.thresholds = dict(thresholds or {})

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = not nonce and bool(app.state.auth.trusted_header)
        if fresh:
            nonce = secrets.token_hex(16)
        request.state.csrf_nonce = nonce
        response: Response = await call_next(request)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                httponly=True,
                samesite="strict",
                secure=app.state.auth.cookie_secure,
            )
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        wants_html = not request.url.path.startswith(
            ("/api", "/export", "/cases")
        ) and "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and wants_html and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        if wants_html:
            return app.state.templates.TemplateResponse(
                request,
                "error.html",
                {"message": exc.detail, "user": None},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    from console import metrics, runbooks

    app.include_router(runbooks.router)
    metrics.install(app, store, sla_s)
    return app
