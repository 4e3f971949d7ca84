"""Backtest diffs in the store, and the console pages that show them.

`vigil backtest --store` saves the diff it computed (streams/replay/backtest.py) as JSON;
the console only reads it back, so a page shows exactly what the command printed. The
model registry's versions are listed beside them at /models.
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import desc, insert, select

from console.api import RowId, Viewer
from console.registry import history, list_versions
from console.schema import backtests
from console.store import AlertStore

router = APIRouter(include_in_schema=False)
api = APIRouter()
CHANGED_SHOWN = 200  # accounts listed on the page; the JSON has them all


def save_backtest(
    store: AlertStore, actor: str, champion: str, challenger: str, events: str, diff: dict
) -> int:
    with store.engine.begin() as conn:
        res = conn.execute(
            insert(backtests).values(
                created_at=time.time(),
                created_by=actor,
                champion=champion[:200],
                challenger=challenger[:200],
                events=events,
                diff=json.dumps(diff, sort_keys=True),
            )
        )
        return int(res.inserted_primary_key[0])


def get_backtest(store: AlertStore, backtest_id: int) -> dict | None:
    with store.engine.connect() as conn:
        r = conn.execute(select(backtests).where(backtests.c.id == backtest_id)).first()
    if r is None:
        return None
    d = dict(r._mapping)
    d["diff"] = json.loads(d["diff"])
    return d


def list_backtests(store: AlertStore, limit: int = 100) -> list[dict]:
    cols = [c for c in backtests.c if c.name != "diff"]
    q = select(*cols).order_by(desc(backtests.c.id)).limit(limit)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def _render(request: Request, name: str, ctx: dict) -> HTMLResponse:
    from console.pages import render

    return render(request, name, ctx)


@router.get("/backtests", response_class=HTMLResponse)
def backtests_page(request: Request, p: Viewer) -> Response:
    rows = list_backtests(request.app.state.store)
    return _render(request, "backtests.html", {"rows": rows})


@router.get("/backtests/{backtest_id}", response_class=HTMLResponse)
def backtest_page(backtest_id: RowId, request: Request, p: Viewer) -> Response:
    bt = get_backtest(request.app.state.store, backtest_id)
    if bt is None:
        raise HTTPException(404, f"no backtest {backtest_id}")
    return _render(request, "backtest.html", {"bt": bt, "d": bt["diff"], "shown": CHANGED_SHOWN})


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, p: Viewer) -> Response:
    store = request.app.state.store
    ctx = {"versions": list_versions(store), "history": history(store, limit=50)}
    return _render(request, "models.html", ctx)


@api.get("/api/backtests/{backtest_id}")
def backtest_json(backtest_id: RowId, request: Request, p: Viewer) -> dict:
    bt = get_backtest(request.app.state.store, backtest_id)
    if bt is None:
        raise HTTPException(404, f"no backtest {backtest_id}")
    return bt


@api.get("/api/models")
def models_json(request: Request, p: Viewer) -> dict:
    store = request.app.state.store
    return {"versions": list_versions(store), "history": history(store, limit=200)}
