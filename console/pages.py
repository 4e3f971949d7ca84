"""Server-rendered pages. Forms post back here and redirect (post/redirect/get)."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console import charts, queries, triage
from console.api import Analyst, Filter, Viewer, apply_verdict, detector_table, run_action
from console.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    AuthError,
    Principal,
    check_csrf,
    csrf_token,
    identify,
    login_csrf_ok,
    login_csrf_token,
    login_nonce,
)
from console.login import MAX_NAME_CHARS, login_attempt, set_session_cookie, start_session
from console.messages import flash_code
from console.schema import SEVERITY_RANK, STATUSES, VERDICTS
from console.sessions import end_session
from console.store import to_epoch
from console.urls import alert_url
from console.users import authenticate_password
from streams.core.alerts import CATEGORIES as ALERT_CATEGORIES

router = APIRouter(include_in_schema=False)
MAX_NEXT_CHARS = 2000
# The last page anyone can reach: keeps OFFSET far inside a 64-bit integer.
MAX_PAGE = 1_000_000
CATEGORIES = (*ALERT_CATEGORIES, "other")


def render(request: Request, name: str, ctx: dict, status: int = 200) -> HTMLResponse:
    p: Principal | None = getattr(request.state, "principal", None)
    base = {
        "user": p.user if p else None,
        "csrf": csrf_token(request.app.state.auth, p) if p and p.nonce else "",
    }
    return request.app.state.templates.TemplateResponse(
        request, name, {**base, **ctx}, status_code=status
    )


def _safe_next(target: str) -> str:
    # Only same-site paths, so the login form cannot bounce a user to another site.
    # Browsers read a backslash as a slash, so "/\\evil.example" would be "//evil.example".
    ok = (
        target.startswith("/")
        and not target.startswith("//")
        and len(target) <= MAX_NEXT_CHARS
        and "\\" not in target
        and target.isprintable()
    )
    return target if ok else "/alerts"


def login_page(request: Request, next: str, error: str = "", status: int = 200) -> Response:
    """The sign-in form, with a CSRF token bound to this browser's pre-session cookie."""
    nonce, fresh = login_nonce(request)
    ctx = {
        "next": _safe_next(next),
        "error": error,
        "login_csrf": login_csrf_token(request.app.state.auth, nonce),
    }
    resp = render(request, "login.html", ctx, status=status)
    if fresh:
        resp.set_cookie(
            LOGIN_COOKIE,
            nonce,
            httponly=True,
            samesite="strict",
            secure=request.app.state.auth.cookie_secure,
        )
    return resp


@router.get("/login")
def login_form(
    request: Request, next: Annotated[str, Query(max_length=MAX_NEXT_CHARS)] = "/alerts"
) -> Response:
    if identify(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return login_page(request, next)


@router.post("/login")
def login_submit(
    request: Request,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/alerts",
    login_token: Annotated[str, Form(alias="csrf_token")] = "",
) -> Response:
    if not login_csrf_ok(request, login_token):
        # Checked before the password, so a cross-site form cannot even spend a guess.
        return login_page(request, next, "the sign-in form expired; please try again", 403)
    try:
        p = login_attempt(request, name, password, authenticate_password)
    except (AuthError, HTTPException) as exc:
        return login_page(request, next, str(exc.detail), exc.status_code)
    _, cookie = start_session(request, p)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(request, resp, cookie)
    return resp


@router.post("/logout")
async def logout(request: Request, p: Viewer) -> Response:
    await check_csrf(request, p)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if p.via == "session" and cookie:
        # The row goes, so the old cookie is dead even if someone kept a copy.
        end_session(request.app.state.store, request.app.state.auth.secret, cookie)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/")
def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/alerts", response_class=HTMLResponse)
def queue_page(
    request: Request, p: Viewer, f: Filter, page: int = Query(1, ge=1, le=MAX_PAGE)
) -> Response:
    store = request.app.state.store
    result = queries.queue(store, f, page, 50)
    return render(
        request,
        "queue.html",
        {
            "q": result,
            "f": f,
            "params": f.as_params(),
            "severities": list(SEVERITY_RANK),
            "statuses": STATUSES,
            "categories": CATEGORIES,
            "detectors": queries.detector_names(store),
        },
    )


@router.get("/alerts/{alert_id:path}", response_class=HTMLResponse)
def alert_page(alert_id: str, request: Request, p: Viewer) -> Response:
    return _alert_view(request, alert_id)


def _alert_view(
    request: Request, alert_id: str, error: str = "", form: dict | None = None, status: int = 200
) -> Response:
    d = queries.alert_detail(request.app.state.store, alert_id)
    if d is None:
        return render(request, "error.html", {"message": "no such alert"}, status=404)
    a = d["alert"]
    window = a.get("window", {})
    return render(
        request,
        "alert.html",
        {
            "d": d,
            "a": a,
            "dets": detector_table(request, a),
            "window_start": to_epoch(window["start"]) if window.get("start") else None,
            "window_end": to_epoch(window["end"]) if window.get("end") else None,
            "categories": CATEGORIES,
            "verdicts": VERDICTS,
            "statuses": STATUSES,
            "max_snooze": triage.MAX_SNOOZE_DAYS,
            "case_id": d.get("case_id"),
            "form_error": error,
            "form": form or {},
        },
        status=status,
    )


def _back(alert_id: str, code: str) -> RedirectResponse:
    # Only a fixed message code travels in the URL; the page looks its text up, so a link
    # with ?msg=anything shows nothing (console/messages.py).
    return RedirectResponse(
        alert_url(alert_id) + "?" + urlencode({"msg": flash_code(code)}), status_code=303
    )


@router.post("/alerts/{alert_id:path}/verdict")
def verdict_form(
    alert_id: str,
    request: Request,
    p: Analyst,
    verdict: Annotated[str, Form()],
    category: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    snooze: Annotated[list[str] | None, Form()] = None,
    snooze_days: Annotated[int, Form()] = 0,
    snooze_reason: Annotated[str, Form()] = "",
) -> Response:
    snoozed = tuple(snooze or ())
    v = triage.Verdict(
        verdict, category or None, note, snoozed, snooze_days if snoozed else 0, snooze_reason
    )
    try:
        apply_verdict(request, p, alert_id, v)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise
        form = {
            "verdict": verdict,
            "category": category,
            "note": note,
            "snooze": list(snoozed),
            "snooze_days": str(snooze_days),
            "snooze_reason": snooze_reason,
        }
        return _alert_view(request, alert_id, f"not saved: {exc.detail}", form, 422)
    return _back(alert_id, "verdict_saved")


@router.post("/alerts/{alert_id:path}/status")
def status_form(
    alert_id: str, request: Request, p: Analyst, status: Annotated[str, Form()]
) -> Response:
    run_action(triage.set_status, request.app.state.store, alert_id, p.name, status)
    return _back(alert_id, "status_changed")


@router.post("/alerts/{alert_id:path}/assign")
def assign_form(
    alert_id: str, request: Request, p: Analyst, action: Annotated[str, Form()] = "me"
) -> Response:
    who = p.name if action == "me" else None
    run_action(triage.assign, request.app.state.store, alert_id, p.name, who)
    return _back(alert_id, "assigned" if who else "unassigned")


@router.post("/alerts/{alert_id:path}/notes")
def note_form(
    alert_id: str, request: Request, p: Analyst, text: Annotated[str, Form()]
) -> Response:
    try:
        triage.add_note(request.app.state.store, alert_id, p.name, text)
    except triage.TriageError as exc:
        return _alert_view(request, alert_id, f"note not saved: {exc}", {"text": text}, 422)
    return _back(alert_id, "note_added")


@router.get("/accounts/{account_id:path}", response_class=HTMLResponse)
def account_page(account_id: str, request: Request, p: Viewer, range: str = "all") -> Response:
    from console.casequeries import case_of_account
    from console.timeline import RANGE_LABELS, parse_range

    store = request.app.state.store
    v = queries.account_view(store, account_id, th=request.app.state.detector_thresholds)
    if v is None:
        return render(request, "error.html", {"message": "no such account"}, status=404)
    related = queries.related_accounts(store, account_id, share=request.app.state.common_link_share)
    chart_list, onset = charts.account_charts(v, range)
    now = time.time()
    return render(
        request,
        "account.html",
        {
            "v": v,
            "related": related,
            "charts": chart_list,
            "onset": onset,
            "range": parse_range(range),
            "ranges": RANGE_LABELS,
            "case_id": case_of_account(store, account_id),
            "graph": charts.related_graph(account_id, related) if related else None,
            "age": _account_age(v),
            "active_snoozes": [s for s in v["snoozes"] if s["until_epoch"] > now],
        },
    )


def _account_age(v: dict) -> float | None:
    """Seconds since sign-up per the engine's latest snapshot, else the span seen here."""
    for w in reversed(v["timeline"]):
        days = w["features"].get("account_age_days")
        if days is not None:
            return float(days) * 86_400
    if v["first_seen"] is None:
        return None
    return v["last_seen"] - v["first_seen"]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    p: Viewer,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    actor: str = Query("", max_length=MAX_NAME_CHARS),
) -> Response:
    entries = queries.audit_entries(request.app.state.store, 100, (page - 1) * 100, actor)
    return render(request, "audit.html", {"entries": entries, "page": page, "actor": actor})
