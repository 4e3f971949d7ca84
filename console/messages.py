"""The fixed messages a page may show after a form post.

A redirect carries only a code (`?msg=verdict_saved`); the page shows the text looked up
here. Any other value shows nothing, so a crafted link cannot put its own words on a page.
"""

from __future__ import annotations

FLASH = {
    "verdict_saved": "verdict saved",
    "status_changed": "status changed",
    "assigned": "assigned to you",
    "unassigned": "unassigned",
    "note_added": "note added",
    "snoozed": "snooze saved",
    "snooze_lifted": "snooze lifted",
    # Codes with counts: the numbers come from the URL too, but digits only.
    "bulk_misuse": "Verdict misuse: {cases} case(s), {alerts} alert(s)",
    "bulk_false_positive": "Verdict false positive: {cases} case(s), {alerts} alert(s)",
    "bulk_needs_info": "Verdict needs info: {cases} case(s), {alerts} alert(s)",
    "bulk_assign_me": "Assigned to you: {cases} case(s), {alerts} alert(s)",
    "bulk_unassign": "Unassigned: {cases} case(s), {alerts} alert(s)",
    "bulk_snooze": "Snoozed: {cases} case(s), {alerts} alert(s)",
    "bulk_close": "Closed: {cases} case(s), {alerts} alert(s)",
    "alerts_updated": "{alerts} alert(s) updated",
    "case_verdict": "verdict saved on case {case} ({alerts} alerts)",
    "case_verdict_last": "verdict saved on case {case} ({alerts} alerts); queue empty",
}
COUNTS = ("cases", "alerts", "case")


def flash_code(code: str) -> str:
    """`code` itself; refuses codes that have no text, so no redirect names one."""
    if code not in FLASH:
        raise KeyError(f"no flash message {code!r}")
    return code


def flash_params(code: str, **counts: int) -> dict[str, str]:
    """Query parameters for a redirect that shows `code` with these counts."""
    return {"msg": flash_code(code), **{k: str(int(v)) for k, v in counts.items()}}


def flash_text(code: object, params: object = None) -> str:
    """The text for a code from the URL, or "" for anything unknown or any count that is
    not a plain number."""
    text = FLASH.get(code, "") if isinstance(code, str) else ""
    if "{" not in text:
        return text
    get = getattr(params, "get", lambda _k: None)
    counts = {k: get(k) for k in COUNTS if "{" + k + "}" in text}
    if not all(isinstance(v, str) and v.isdigit() and len(v) <= 9 for v in counts.values()):
        return ""
    return text.format(**counts)
