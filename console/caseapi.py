"""The JSON API of cases, bulk actions and snoozes (the pages call the same helpers)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from console import caseactions, casequeries, snoozectl, triage
from console.api import ROW_ID_MAX, Analyst, RowId, VerdictIn, Viewer
from console.casequeries import CaseFilter, FilterError
from console.contrib import Thresholds

router = APIRouter()


def case_filter(
    view: str = "",
    severity: str = "",
    category: str = "",
    detector: str = "",
    since: str = "",
    until: str = "",
    q: str = "",
    kind: str = "",
    assignee: str = "",
) -> CaseFilter:
    """The query parameters, unchecked: pages show a bad value as a form error, the API 422."""
    return CaseFilter(view, severity, category, detector, since, until, q, kind, assignee)


RawCaseFilter = Annotated[CaseFilter, Depends(case_filter)]


def checked(f: CaseFilter) -> CaseFilter:
    try:
        return f.check()
    except FilterError as exc:
        raise HTTPException(422, str(exc)) from None


def thresholds(request: Request) -> Thresholds:
    return request.app.state.detector_thresholds


def publish(request: Request, result: caseactions.BulkResult) -> None:
    pub = request.app.state.publisher
    for label in result.labels:
        pub.publish_label(label)
    for s in result.snoozes:
        pub.publish_snooze(s)


def run(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except triage.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except triage.TriageError as exc:
        raise HTTPException(422, str(exc)) from None


class BulkIn(BaseModel):
    action: Literal["verdict", "assign", "snooze", "close", "status"]
    case_ids: list[Annotated[int, Field(ge=1, le=ROW_ID_MAX)]] = Field(
        default_factory=list, description="the cases, or use `filter`"
    )
    filter: dict[str, str] | None = Field(
        None, description="every case matching these queue filters (view, severity, q, ...)"
    )
    verdict: VerdictIn | None = None
    assignee: str | None = Field(None, description="for assign: user name, or null to unassign")
    status: str = Field("", description="for status: open, in_review, waiting or closed")
    snooze_days: int = Field(0, ge=0, le=triage.MAX_SNOOZE_DAYS)
    snooze_reason: str = ""
    snooze_detectors: list[str] = Field(
        default_factory=list, description="empty: the detectors that contributed"
    )

    def request(self) -> caseactions.BulkRequest:
        v = self.verdict
        verdict = (
            triage.Verdict(
                v.verdict,
                v.category,
                v.note,
                tuple(v.snooze_detectors),
                v.snooze_days,
                v.snooze_reason,
            )
            if v
            else None
        )
        return caseactions.BulkRequest(
            self.action,
            verdict,
            self.assignee,
            self.status,
            self.snooze_days,
            self.snooze_reason,
            tuple(self.snooze_detectors),
        )


class AlertBulkIn(BulkIn):
    alert_ids: list[str] = Field(default_factory=list)


class CaseStatusIn(BaseModel):
    status: Literal["open", "in_review", "waiting", "closed"]


class SnoozeIn(BaseModel):
    account_id: str
    detector: str
    days: int = Field(..., ge=1, le=triage.MAX_SNOOZE_DAYS)
    reason: str


def filter_from(data: dict[str, str]) -> CaseFilter:
    known = set(CaseFilter.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise HTTPException(422, f"unknown filter key(s) {', '.join(unknown)}")
    return checked(CaseFilter(**data))


@router.get("/api/cases", tags=["cases"], summary="The case queue")
def list_cases(
    p: Viewer,
    request: Request,
    f: RawCaseFilter,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=500),
) -> dict:
    app = request.app.state
    return casequeries.case_queue(
        app.store, checked(f), thresholds(request), page, per_page, app.sla_minutes
    )


@router.post("/api/cases/bulk", tags=["cases"], summary="One action on many cases")
def bulk_cases(body: BulkIn, p: Analyst, request: Request) -> dict:
    store, th = request.app.state.store, thresholds(request)
    ids = list(body.case_ids)
    if body.filter is not None:
        ids += casequeries.case_ids(store, filter_from(body.filter), th)
    result = run(caseactions.on_cases, store, p.name, ids, body.request(), th)
    publish(request, result)
    return result.as_dict()


@router.post("/api/alerts/bulk", tags=["cases"], summary="One action on many alerts")
def bulk_alerts(body: AlertBulkIn, p: Analyst, request: Request) -> dict:
    store, th = request.app.state.store, thresholds(request)
    result = run(caseactions.on_alerts, store, p.name, body.alert_ids, body.request(), th)
    publish(request, result)
    return result.as_dict()


@router.get("/api/cases/{case_id}", tags=["cases"], summary="One case with its alerts")
def get_case(case_id: RowId, p: Viewer, request: Request) -> dict:
    d = casequeries.case_detail(request.app.state.store, case_id, thresholds(request))
    if d is None:
        raise HTTPException(404, f"no case {case_id}")
    return d


@router.post("/api/cases/{case_id}/verdict", tags=["cases"], summary="Verdict on every alert")
def case_verdict(case_id: RowId, body: VerdictIn, p: Analyst, request: Request) -> dict:
    bulk = BulkIn(action="verdict", case_ids=[case_id], verdict=body)
    return bulk_cases(bulk, p, request)


@router.post("/api/cases/{case_id}/status", tags=["cases"])
def case_status(case_id: RowId, body: CaseStatusIn, p: Analyst, request: Request) -> dict:
    return bulk_cases(BulkIn(action="status", case_ids=[case_id], status=body.status), p, request)


@router.post("/api/cases/{case_id}/assign", tags=["cases"])
def case_assign(case_id: RowId, body: dict, p: Analyst, request: Request) -> dict:
    who = body.get("assignee")
    if who is not None and not isinstance(who, str):
        raise HTTPException(422, "assignee must be a user name or null")
    return bulk_cases(BulkIn(action="assign", case_ids=[case_id], assignee=who), p, request)


@router.post("/api/cases/{case_id}/notes", tags=["cases"])
def case_note(case_id: RowId, body: dict, p: Analyst, request: Request) -> dict:
    text = body.get("text")
    if not isinstance(text, str):
        raise HTTPException(422, "text must be a string")
    note_id = run(caseactions.add_case_note, request.app.state.store, case_id, p.name, text)
    return {"note_id": note_id}


@router.get("/api/snoozes", tags=["snoozes"], summary="Snoozes (running ones unless all=true)")
def get_snoozes(p: Viewer, request: Request, all: bool = False) -> list[dict]:
    return snoozectl.list_snoozes(request.app.state.store, time.time(), include_ended=all)


@router.post("/api/snoozes", tags=["snoozes"], summary="Snooze a detector for an account")
def post_snooze(body: SnoozeIn, p: Analyst, request: Request) -> dict:
    s = run(
        snoozectl.create,
        request.app.state.store,
        p.name,
        body.account_id,
        body.detector,
        body.days,
        body.reason,
    )
    request.app.state.publisher.publish_snooze(s)
    return s


@router.post("/api/snoozes/{snooze_id}/lift", tags=["snoozes"], summary="End a snooze now")
def lift_snooze(snooze_id: RowId, p: Analyst, request: Request) -> dict:
    s = run(snoozectl.lift, request.app.state.store, p.name, snooze_id)
    request.app.state.publisher.publish_snooze(s)
    return s
