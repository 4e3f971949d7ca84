"""Serves docs/runbooks/ at /runbooks/NAME.md, so alert rules can link to a host that exists.

Prometheus builds each rule's `runbook_url` from its external label `runbook_base`; pointing
that at the console (`http://console:8080/runbooks`) gives on-call a working link wherever
the console runs. Runbooks hold no secrets, so they are served without a login: whoever is
paged may not have a console account.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

router = APIRouter()
NAME = re.compile(r"vigil-[a-z0-9-]+\.md")
# A checkout has them next to the package; the container image copies them here.
REPO_RUNBOOKS = Path(__file__).resolve().parents[1] / "docs" / "runbooks"


def runbooks_dir() -> Path:
    return Path(os.environ.get("VIGIL_RUNBOOKS_DIR") or REPO_RUNBOOKS)


@router.get("/runbooks/{name}", include_in_schema=False)
def runbook(name: str) -> PlainTextResponse:
    path = runbooks_dir() / name
    if not NAME.fullmatch(name) or not path.is_file():
        raise HTTPException(404, f"no runbook {name!r}")
    return PlainTextResponse(path.read_text(encoding="utf-8"), media_type="text/markdown")
