"""The JSON API: everything the pages do, for scripts and integrations."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from console import queries, triage
from console.auth import (
    Principal,
    csrf_token,
    require_analyst,
    require_viewer,
)
from console.login import login_attempt, set_session_cookie, start_session
from console.schema import SEVERITY_RANK, STATUSES
from console.users import authenticate_password

router = APIRouter()
# Row ids are 64-bit signed integers in both stores: a larger one names no row, and the
# drivers refuse to bind it (an OverflowError, a 500) instead of finding nothing.
ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
Viewer = Annotated[Principal, Depends(require_viewer)]
Analyst = Annotated[Principal, Depends(require_analyst)]
# Bounds on what a URL may ask for: page numbers keep OFFSET inside a 64-bit integer, and
# search text stays short enough to index.
MAX_PAGE = 1_000_000
MAX_OFFSET = 1_000_000_000
MAX_TEXT = 500
Text = Annotated[str, Query(max_length=MAX_TEXT)]


class VerdictIn(BaseModel):
    verdict: Literal["misuse", "false_positive", "needs_info"]
    category: str | None = Field(None, description="required when verdict is misuse")
    note: str = ""
    snooze_detectors: list[str] = Field(
        default_factory=list, description="false positive only: detectors to mute"
    )
    snooze_days: int = Field(0, ge=0, le=triage.MAX_SNOOZE_DAYS)
    snooze_reason: str = ""


class StatusIn(BaseModel):
    status: Literal["open", "acknowledged", "resolved"]


class AssignIn(BaseModel):
    assignee: str | None = Field(None, description="user name, or null to unassign")


class NoteIn(BaseModel):
    text: str


class LoginIn(BaseModel):
    name: str
    password: str


def queue_filter(
    severity: Text = "",
    category: Text = "",
    detector: Text = "",
    status: Text = "",
    since: Text = "",
    until: Text = "",
    account: Text = "",
) -> queries.QueueFilter:
    if severity and severity not in SEVERITY_RANK:
        raise HTTPException(422, "severity must be one of " + ", ".join(SEVERITY_RANK))
    if status and status not in STATUSES:
        raise HTTPException(422, "status must be one of " + ", ".join(STATUSES))
    try:
        if since:
            queries.to_epoch(since)
        if until:
            queries.to_epoch(until)
    except (ValueError, OverflowError):
        raise HTTPException(422, "since/until must be RFC3339 times") from None
    return queries.QueueFilter(severity, category, detector, status, since, until, account)


Filter = Annotated[queries.QueueFilter, Depends(queue_filter)]


def detector_table(request: Request, alert: dict) -> list[dict]:
    """Each detector's score beside the threshold it is judged against."""
    return request.app.state.detector_thresholds.table(alert)


def apply_verdict(request: Request, p: Principal, alert_id: str, v: triage.Verdict) -> dict:
    store = request.app.state.store
    try:
        label = triage.record_verdict(store, alert_id, p.name, v)
    except triage.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except triage.TriageError as exc:
        raise HTTPException(422, str(exc)) from None
    pub = request.app.state.publisher
    pub.publish_label(label)
    for s in label["snoozes"]:
        pub.publish_snooze(s)
    return label


def run_action(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except triage.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except triage.TriageError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/api/session", tags=["auth"], summary="Password login; sets the session cookie")
def api_login(body: LoginIn, request: Request) -> JSONResponse:
    p = login_attempt(request, body.name, body.password, authenticate_password)
    p, cookie = start_session(request, p)
    resp = JSONResponse(
        {"user": p.name, "role": p.user.role, "csrf_token": csrf_token(request.app.state.auth, p)}
    )
    set_session_cookie(request, resp, cookie)
    return resp


@router.get("/api/me", tags=["auth"], summary="Who am I, and my CSRF token")
def me(p: Viewer, request: Request) -> dict:
    return {
        "user": p.name,
        "role": p.user.role,
        "via": p.via,
        "csrf_token": csrf_token(request.app.state.auth, p) if p.nonce else None,
    }


@router.get("/api/alerts", tags=["alerts"], summary="The alert queue")
def list_alerts(
    p: Viewer,
    request: Request,
    f: Filter,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    per_page: int = Query(50, ge=1, le=500),
) -> dict:
    th = request.app.state.detector_thresholds
    return queries.queue(request.app.state.store, f, page, per_page, th)


@router.get("/api/alerts/{alert_id:path}", tags=["alerts"], summary="One alert with its case")
def get_alert(alert_id: str, p: Viewer, request: Request) -> dict:
    d = queries.alert_detail(request.app.state.store, alert_id)
    if d is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    d["detector_thresholds"] = detector_table(request, d["alert"])
    return d


@router.post(
    "/api/alerts/{alert_id:path}/verdict",
    tags=["triage"],
    summary="Label an alert: misuse (with category), false positive, needs info",
)
def post_verdict(alert_id: str, body: VerdictIn, p: Analyst, request: Request) -> dict:
    return apply_verdict(
        request,
        p,
        alert_id,
        triage.Verdict(
            body.verdict,
            body.category,
            body.note,
            tuple(body.snooze_detectors),
            body.snooze_days,
            body.snooze_reason,
        ),
    )


@router.post("/api/alerts/{alert_id:path}/status", tags=["triage"])
def post_status(alert_id: str, body: StatusIn, p: Analyst, request: Request) -> dict:
    run_action(triage.set_status, request.app.state.store, alert_id, p.name, body.status)
    return {"alert_id": alert_id, "status": body.status}


@router.post("/api/alerts/{alert_id:path}/assign", tags=["triage"])
def post_assign(alert_id: str, body: AssignIn, p: Analyst, request: Request) -> dict:
    run_action(triage.assign, request.app.state.store, alert_id, p.name, body.assignee)
    return {"alert_id": alert_id, "assignee": body.assignee}


@router.post("/api/alerts/{alert_id:path}/notes", tags=["triage"])
def post_note(alert_id: str, body: NoteIn, p: Analyst, request: Request) -> dict:
    try:
        note_id = triage.add_note(request.app.state.store, alert_id, p.name, body.text)
    except triage.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except triage.TriageError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"note_id": note_id}


@router.get(
    "/api/accounts/{account_id:path}",
    tags=["accounts"],
    summary="An account: plan, age, keys, IPs, timeline, alerts, related accounts",
)
def get_account(account_id: str, p: Viewer, request: Request) -> dict:
    store = request.app.state.store
    v = queries.account_view(store, account_id)
    if v is None:
        raise HTTPException(404, f"no account {account_id!r}")
    v["related"] = queries.related_accounts(
        store, account_id, share=request.app.state.common_link_share
    )
    return v


@router.get("/api/audit", tags=["audit"], summary="The audit log, newest first")
def get_audit(
    p: Viewer,
    request: Request,
    limit: int = Query(200, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    actor: Text = "",
) -> list[dict]:
    return queries.audit_entries(request.app.state.store, limit, offset, actor)


@router.get("/api/labels", tags=["labels"], summary="Every verdict given")
def get_labels(p: Viewer, request: Request) -> list[dict]:
    return queries.all_labels(request.app.state.store)


def _csv(rows: list[dict], columns: list[str], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(v: object) -> str:
    text = ";".join(map(str, v)) if isinstance(v, list) else "" if v is None else str(v)
    # A leading =, +, - or @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/export/alerts.csv", tags=["export"], summary="The filtered queue as CSV")
def export_queue(p: Viewer, request: Request, f: Filter) -> Response:
    rows = queries.queue_rows(request.app.state.store, f, request.app.state.detector_thresholds)
    cols = [
        "alert_id",
        "account_id",
        "ts",
        "severity",
        "score",
        "category",
        "detectors",
        "status",
        "assignee",
        "verdict",
    ]
    return _csv(rows, cols, "vigil-alerts.csv")


@router.get("/export/labels.csv", tags=["export"], summary="Every verdict as CSV")
def export_labels(p: Viewer, request: Request) -> Response:
    rows = queries.all_labels(request.app.state.store)
    cols = ["id", "alert_id", "account_id", "verdict", "category", "note", "analyst", "created_at"]
    return _csv(rows, cols, "vigil-labels.csv")


@router.get(
    "/cases/{account_id:path}",
    tags=["export"],
    summary="One account's whole case as a single JSON file",
)
def export_case(account_id: str, p: Viewer, request: Request) -> Response:
    case = queries.case_file(request.app.state.store, account_id)
    if case is None:
        raise HTTPException(404, f"no account {account_id!r}")
    case["exported_by"] = p.name
    case["exported_at"] = time.time()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in account_id)[:80]
    return Response(
        json.dumps(case, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="case-{safe}.json"'},
    )
