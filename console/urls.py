"""Links to console pages; ids from events are quoted whole, slashes included."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def account_url(account_id: str) -> str:
    return "/accounts/" + quote(account_id, safe="")


def alert_url(alert_id: str) -> str:
    return "/alerts/" + quote(alert_id, safe="")


def case_url(account_id: str) -> str:
    return "/cases/" + quote(account_id, safe="")


def case_page_url(case_id: int, params: dict | None = None) -> str:
    return f"/case/{int(case_id)}" + ("?" + urlencode(params) if params else "")


def search_url(value: str, kind: str = "") -> str:
    """Every value shown on a page links to the cases it appears in."""
    params = {"q": value, "view": "all"}
    if kind:
        params["kind"] = kind
    return "/queue?" + urlencode(params)
