"""Server-rendered case pages: the case queue, one case, bulk actions, snoozes.

Forms post back and redirect (post/redirect/get). A form that cannot be saved is shown
again with its input kept and the reason as an error (status 422), never as a success.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console import caseactions, casequeries, snoozectl, timeline, triage
from console.api import ROW_ID_MAX, Analyst, RowId, Viewer
from console.caseapi import RawCaseFilter, publish, thresholds
from console.casequeries import CaseFilter, FilterError
from console.messages import flash_params
from console.pages import CATEGORIES, render
from console.schema import CASE_STATUSES, SEVERITY_RANK, VERDICTS
from console.urls import case_page_url

router = APIRouter(include_in_schema=False)
PER_PAGE = 50
BULK_CHOICES = (
    ("misuse", "Verdict: confirm misuse"),
    ("false_positive", "Verdict: false positive"),
    ("needs_info", "Verdict: needs more info"),
    ("assign_me", "Assign to me"),
    ("unassign", "Unassign"),
    ("snooze", "Snooze contributing detectors"),
    ("close", "Close without verdict"),
)


def ctx_filter(ctx: str) -> CaseFilter:
    """The queue filter a case page was opened from, carried through its forms."""
    known = set(CaseFilter.__dataclass_fields__)
    data = {k: v for k, v in parse_qsl(ctx) if k in known}
    try:
        return CaseFilter(**data).check()
    except FilterError:
        return CaseFilter()


def _queue_ctx(request: Request, f: CaseFilter, page: int, **extra: object) -> dict:
    app = request.app.state
    error = ""
    try:
        f.check()
        q = casequeries.case_queue(
            app.store, f, thresholds(request), page, PER_PAGE, app.sla_minutes
        )
    except FilterError as exc:
        error = str(exc)
        q = casequeries.case_queue(
            app.store, CaseFilter(), thresholds(request), 1, PER_PAGE, app.sla_minutes
        )
    return {
        "q": q,
        "f": f,
        "params": f.as_params(),
        "ctx": urlencode(f.as_params()),
        "views": casequeries.VIEWS,
        "severities": list(SEVERITY_RANK),
        "categories": CATEGORIES,
        "detectors": sorted(set(q["detector_counts"]) | {f.detector} - {""}),
        "search_kinds": casequeries.SEARCH_LABELS,
        "bulk_choices": BULK_CHOICES,
        "sla": app.sla_minutes,
        "form_error": error,
        "form": {},
        "selected": set(),
        **extra,
    }


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request, p: Viewer, f: RawCaseFilter, page: int = Query(1, ge=1)
) -> Response:
    ctx = _queue_ctx(request, f, page)
    return render(request, "cases.html", ctx, status=422 if ctx["form_error"] else 200)


@router.post("/queue/bulk")
async def bulk_form(request: Request, p: Analyst) -> Response:
    form = await request.form()
    ctx = str(form.get("ctx", ""))
    f = ctx_filter(ctx)
    page = int(str(form.get("page", "1")) or 1) if str(form.get("page", "1")).isdigit() else 1
    selected = _row_ids(form.getlist("case_id"))
    scope = str(form.get("scope", "selected"))
    if scope == "page":
        ids = _row_ids(str(form.get("page_ids", "")).split(","))
    elif scope == "filter":
        ids = casequeries.case_ids(request.app.state.store, f, thresholds(request))
    else:
        ids = selected
    req = _bulk_request(dict(form), p.name)
    try:
        if req is None:
            raise triage.TriageError("choose an action")
        result = caseactions.on_cases(
            request.app.state.store, p.name, ids, req, thresholds(request)
        )
    except (triage.TriageError, triage.NotFound) as exc:
        view = _queue_ctx(
            request, f, page, form_error=f"not done: {exc}", form=dict(form), selected=set(selected)
        )
        return render(request, "cases.html", view, status=422)
    publish(request, result)
    done = flash_params(
        f"bulk_{form.get('action')}", cases=len(result.cases), alerts=len(result.alerts)
    )
    return RedirectResponse("/queue?" + urlencode({**f.as_params(), **done}), status_code=303)


def _int(value: object, default: int = 0) -> int:
    text = str(value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else default


def _bulk_request(form: dict, me: str) -> caseactions.BulkRequest | None:
    action = str(form.get("action", ""))
    note = str(form.get("note", ""))
    if action in VERDICTS:
        v = triage.Verdict(action, str(form.get("category", "")) or None, note)
        return caseactions.BulkRequest("verdict", verdict=v)
    if action in ("assign_me", "unassign"):
        return caseactions.BulkRequest("assign", assignee=me if action == "assign_me" else None)
    if action == "snooze":
        return caseactions.BulkRequest(
            "snooze",
            snooze_days=_int(form.get("snooze_days")),
            snooze_reason=str(form.get("snooze_reason", "")),
        )
    if action == "close":
        return caseactions.BulkRequest("close")
    return None


def _case_ctx(
    request: Request, case_id: int, f: CaseFilter, rng: str, **extra: object
) -> dict | None:
    store, th = request.app.state.store, thresholds(request)
    d = casequeries.case_detail(store, case_id, th)
    if d is None:
        return None
    c = d["case"]
    prev_id, next_id = casequeries.neighbours(store, f, th, case_id)
    rng = timeline.parse_range(rng)
    onset = min((a["window_start"] for a in d["alerts"]), default=None)
    ends = [a["window_end"] for a in d["alerts"]]
    series = timeline.member_series(store, d["accounts"], "requests", None)
    xs = [x for s, _ in series.values() for x in s] + ends
    since = timeline.cut(xs, rng)
    if since is not None:
        series = {
            a: ([x for x in s if x >= since], [y for x, y in zip(s, ys, strict=True) if x >= since])
            for a, (s, ys) in series.items()
        }
    markers = [
        (
            a["window_start"],
            a["severity"],
            a["account_id"],
            f"{a['severity']} {a['category']} on {a['account_id']}",
        )
        for a in d["alerts"]
        if since is None or a["window_start"] >= since
    ]
    title = "Requests per window, every account of the case on one time axis"
    age = None if c["oldest_arrival"] is None else max(0.0, time.time() - c["oldest_arrival"])
    sla = request.app.state.sla_minutes
    dets = sorted({x["name"] for a in d["alerts"] for x in a["contributed"]})
    return {
        "d": d,
        "c": c,
        "f": f,
        "ctx": urlencode(f.as_params()),
        "prev_id": prev_id,
        "next_id": next_id,
        "range": rng,
        "ranges": timeline.RANGE_LABELS,
        "chart": timeline.shared_axis_chart(title, series, markers, onset),
        "age": age,
        "sla_state": casequeries.sla_state(c["severity"], age, sla)
        if c["status"] != "closed"
        else "ok",
        "sla_minutes": sla.get(c["severity"]),
        "categories": CATEGORIES,
        "verdicts": VERDICTS,
        "statuses": CASE_STATUSES,
        "contributing": dets,
        "other_detectors": sorted(
            {x["name"] for a in d["alerts"] for x in a["detector_table"]} - set(dets)
        ),
        "max_snooze": triage.MAX_SNOOZE_DAYS,
        "bulk_choices": BULK_CHOICES,
        "form_error": "",
        "form": {},
        **extra,
    }


@router.get("/case/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request, p: Viewer, case_id: str, f: RawCaseFilter, range: str = "all"
) -> Response:
    if not _row_ids([case_id]):
        return render(request, "error.html", {"message": f"no case {case_id!r}"}, status=404)
    return _case_page(request, int(case_id), f, range)


def _row_ids(values: list) -> list[int]:
    """The values of a form or path that can name a row (ids past ROW_ID_MAX name none)."""
    return [int(x) for x in map(str, values) if x.isdigit() and int(x) <= ROW_ID_MAX]


def _case_page(request: Request, case_id: int, f: CaseFilter, range: str) -> Response:
    try:
        f = f.check()
    except FilterError:
        f = CaseFilter()
    ctx = _case_ctx(request, case_id, f, range)
    if ctx is None:
        return render(request, "error.html", {"message": f"no case {case_id}"}, status=404)
    if ctx["c"]["status"] == "merged":
        return RedirectResponse(
            case_page_url(ctx["c"]["merged_into"], f.as_params()), status_code=303
        )
    return render(request, "case.html", ctx)


def _case_error(request: Request, case_id: int, ctx: str, error: str, form: dict) -> Response:
    view = _case_ctx(request, case_id, ctx_filter(ctx), "all", form_error=error, form=form)
    if view is None:
        return render(request, "error.html", {"message": f"no case {case_id}"}, status=404)
    return render(request, "case.html", view, status=422)


def _after(case_id: int, f: CaseFilter, msg: dict[str, str]) -> RedirectResponse:
    return RedirectResponse(case_page_url(case_id, {**f.as_params(), **msg}), status_code=303)


@router.post("/case/{case_id}/verdict")
async def case_verdict_form(case_id: RowId, request: Request, p: Analyst) -> Response:
    form = await request.form()
    ctx = str(form.get("ctx", ""))
    f = ctx_filter(ctx)
    store, th = request.app.state.store, thresholds(request)
    snoozed = tuple(str(x) for x in form.getlist("snooze"))
    v = triage.Verdict(
        str(form.get("verdict", "")),
        str(form.get("category", "")) or None,
        str(form.get("note", "")),
        snoozed,
        _int(form.get("snooze_days")) if snoozed else 0,
        str(form.get("snooze_reason", "")),
    )
    # The next case is the one after this in the queue as the analyst saw it.
    _, next_id = casequeries.neighbours(store, f, th, case_id)
    try:
        result = caseactions.on_cases(
            store, p.name, [case_id], caseactions.BulkRequest("verdict", verdict=v), th
        )
    except (triage.TriageError, triage.NotFound) as exc:
        keep = {k: form.getlist(k) if k == "snooze" else str(v) for k, v in form.items()}
        return _case_error(request, case_id, ctx, f"not saved: {exc}", keep)
    publish(request, result)
    if next_id is None:
        next_id = casequeries.first_case(store, f, th, {case_id})
    if next_id is None:
        last = flash_params("case_verdict_last", case=case_id, alerts=len(result.alerts))
        return RedirectResponse("/queue?" + urlencode({**f.as_params(), **last}), status_code=303)
    return _after(next_id, f, flash_params("case_verdict", case=case_id, alerts=len(result.alerts)))


@router.post("/case/{case_id}/assign")
async def case_assign_form(case_id: RowId, request: Request, p: Analyst) -> Response:
    form = await request.form()
    f = ctx_filter(str(form.get("ctx", "")))
    who = p.name if form.get("action", "me") == "me" else None
    try:
        caseactions.on_cases(
            request.app.state.store,
            p.name,
            [case_id],
            caseactions.BulkRequest("assign", assignee=who),
            thresholds(request),
        )
    except triage.NotFound as exc:
        return render(request, "error.html", {"message": str(exc)}, status=404)
    return _after(case_id, f, flash_params("assigned" if who else "unassigned"))


@router.post("/case/{case_id}/status")
async def case_status_form(case_id: RowId, request: Request, p: Analyst) -> Response:
    form = await request.form()
    ctx = str(form.get("ctx", ""))
    req = caseactions.BulkRequest("status", status=str(form.get("status", "")))
    try:
        caseactions.on_cases(request.app.state.store, p.name, [case_id], req, thresholds(request))
    except (triage.TriageError, triage.NotFound) as exc:
        return _case_error(request, case_id, ctx, f"not saved: {exc}", dict(form))
    return _after(case_id, ctx_filter(ctx), flash_params("status_changed"))


@router.post("/case/{case_id}/notes")
async def case_note_form(case_id: RowId, request: Request, p: Analyst) -> Response:
    form = await request.form()
    ctx = str(form.get("ctx", ""))
    try:
        caseactions.add_case_note(
            request.app.state.store, case_id, p.name, str(form.get("text", ""))
        )
    except (triage.TriageError, triage.NotFound) as exc:
        return _case_error(request, case_id, ctx, f"note not saved: {exc}", dict(form))
    return _after(case_id, ctx_filter(ctx), flash_params("note_added"))


@router.post("/case/{case_id}/alerts")
async def case_alerts_form(case_id: RowId, request: Request, p: Analyst) -> Response:
    """A bulk action on the alerts ticked on a case page."""
    form = await request.form()
    ctx = str(form.get("ctx", ""))
    ids = [str(x) for x in form.getlist("alert_id")]
    req = _bulk_request(dict(form), p.name)
    try:
        if req is None:
            raise triage.TriageError("choose an action")
        result = caseactions.on_alerts(
            request.app.state.store, p.name, ids, req, thresholds(request)
        )
    except (triage.TriageError, triage.NotFound) as exc:
        keep = {k: form.getlist(k) if k == "alert_id" else str(v) for k, v in form.items()}
        return _case_error(request, case_id, ctx, f"not done: {exc}", keep)
    publish(request, result)
    return _after(
        case_id, ctx_filter(ctx), flash_params("alerts_updated", alerts=len(result.alerts))
    )


@router.get("/snoozes", response_class=HTMLResponse)
def snoozes_page(request: Request, p: Viewer, show: str = "active", account: str = "") -> Response:
    return _snoozes(request, show, {"account_id": account})


def _snoozes(
    request: Request, show: str, form: dict, error: str = "", status: int = 200
) -> Response:
    store = request.app.state.store
    rows = snoozectl.list_snoozes(store, include_ended=show == "all")
    return render(
        request,
        "snoozes.html",
        {
            "rows": rows,
            "show": show,
            "detectors": snoozectl.known_detectors(store),
            "max_snooze": triage.MAX_SNOOZE_DAYS,
            "form": form,
            "form_error": error,
        },
        status=status,
    )


@router.post("/snoozes")
async def snooze_create_form(request: Request, p: Analyst) -> Response:
    form = await request.form()
    data = {k: str(v) for k, v in form.items()}
    try:
        s = snoozectl.create(
            request.app.state.store,
            p.name,
            data.get("account_id", ""),
            data.get("detector", ""),
            _int(data.get("days")),
            data.get("reason", ""),
        )
    except triage.TriageError as exc:
        return _snoozes(request, "active", data, f"not saved: {exc}", 422)
    request.app.state.publisher.publish_snooze(s)
    return RedirectResponse("/snoozes?" + urlencode(flash_params("snoozed")), status_code=303)


@router.post("/snoozes/{snooze_id}/lift")
async def snooze_lift_form(snooze_id: RowId, request: Request, p: Analyst) -> Response:
    try:
        s = snoozectl.lift(request.app.state.store, p.name, snooze_id)
    except (triage.TriageError, triage.NotFound) as exc:
        return _snoozes(request, "active", {}, f"not lifted: {exc}", 422)
    request.app.state.publisher.publish_snooze(s)
    return RedirectResponse("/snoozes?" + urlencode(flash_params("snooze_lifted")), status_code=303)
