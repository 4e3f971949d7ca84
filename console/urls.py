"""Links to console pages; ids from events are quoted whole, slashes included."""

from __future__ import annotations

from urllib.parse import quote


def account_url(account_id: str) -> str:
    return "/accounts/" + quote(account_id, safe="")


def alert_url(alert_id: str) -> str:
    return "/alerts/" + quote(alert_id, safe="")


def case_url(account_id: str) -> str:
    return "/cases/" + quote(account_id, safe="")
