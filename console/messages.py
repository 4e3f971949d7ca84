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
}


def flash_code(code: str) -> str:
    """`code` itself; refuses codes that have no text, so no redirect names one."""
    if code not in FLASH:
        raise KeyError(f"no flash message {code!r}")
    return code


def flash_text(code: object) -> str:
    """The text for a code from the URL, or "" for anything unknown."""
    return FLASH.get(code, "") if isinstance(code, str) else ""
