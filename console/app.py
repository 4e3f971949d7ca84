"""The console's FastAPI application: server-rendered pages plus the JSON API.

`create_app(store, ...)` wires everything; `vigil console` serves it with uvicorn.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from console.auth import CSRF_COOKIE, AuthSettings
from console.labels import LabelPublisher, NullPublisher
from console.limiter import LoginLimiter
from console.messages import flash_text
from console.store import AlertStore
from console.urls import account_url, alert_url, case_page_url, case_url, search_url

HERE = Path(__file__).parent
# The only script is the same-origin keyboard helper (/static/keys.js); no inline script and
# no other origin, so a payload that slipped past escaping still could not run. Every page
# works without it: plain HTML forms and inline SVG.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def fmt_ts(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    days, rem = divmod(int(seconds), 86_400)
    return f"{days} d {rem // 3600} h" if days else f"{rem // 3600} h {rem % 3600 // 60} min"


def fmt_wait(seconds: float | None) -> str:
    """A waiting time, short: 42 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def fmt_minutes(minutes: float) -> str:
    """An SLA length: 15 min, 1 h, 4 h, 1 d."""
    text = fmt_wait(minutes * 60)
    return text.removesuffix(" 0 min").removesuffix(" 0 h")


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
        case_page_url=case_page_url,
        search_url=search_url,
        fmt_ts=fmt_ts,
        fmt_age=fmt_age,
        flash_text=flash_text,
        fmt_wait=fmt_wait,
        fmt_minutes=fmt_minutes,
        urlencode=urlencode,
    )
    return t


def create_app(
    store: AlertStore,
    auth: AuthSettings | None = None,
    publisher: LabelPublisher | None = None,
    default_threshold: float = 0.5,
    thresholds: dict[str, float] | None = None,
    sla_minutes: dict[str, float] | None = None,
    common_link_share: float = 0.02,
) -> FastAPI:
    from console import api, caseapi, casepages, pages
    from console.casequeries import DEFAULT_SLA_MINUTES
    from console.contrib import Thresholds

    # No /docs or /redoc: FastAPI would serve them with Swagger UI and ReDoc scripts from a
    # CDN, unpinned and without integrity checks, on the console's own origin. The schema
    # stays at /openapi.json for any OpenAPI viewer the reader trusts.
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
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
        app.state.auth.login_max_failures,
        app.state.auth.login_window_s,
        app.state.auth.login_max_keys,
    )
    app.state.templates = make_templates()
    app.state.default_threshold = default_threshold
    app.state.thresholds = dict(thresholds or {})
    app.state.detector_thresholds = Thresholds(default_threshold, dict(thresholds or {}))
    app.state.sla_minutes = {**DEFAULT_SLA_MINUTES, **(sla_minutes or {})}
    app.state.common_link_share = common_link_share

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

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api"):
            return await request_validation_exception_handler(request, exc)
        # Pages get one fixed line naming the fields (names of ours: only string locations
        # are kept); the values sent are not echoed back.
        fields = sorted(
            {e["loc"][-1] for e in exc.errors() if e.get("loc") and isinstance(e["loc"][-1], str)}
        )
        detail = "invalid value for " + ", ".join(fields) if fields else "invalid request"
        return await http_error(request, StarletteHTTPException(422, detail))

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(caseapi.router)
    app.include_router(api.router)
    app.include_router(casepages.router)
    app.include_router(pages.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    from console import backtests, metrics, runbooks

    app.include_router(runbooks.router)
    app.include_router(backtests.router)
    app.include_router(backtests.api)
    # One SLA per severity for the queue's colours and the backlog metrics alike.
    metrics.install(app, store, {k: 60.0 * v for k, v in app.state.sla_minutes.items()})
    return app
