"""Writes the dashboards' JSON for Grafana provisioning.

python -m dashboards.build           # rewrite dashboards/json/*.json
python -m dashboards.build --check   # exit 1 if the committed JSON is stale
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from dashboards import detectors_models, misuse_overview, pipeline_health

OUT_DIR = Path(__file__).resolve().parent / "json"
BUILDERS: dict[str, Callable[[], dict]] = {
    misuse_overview.UID: misuse_overview.build,
    pipeline_health.UID: pipeline_health.build,
    detectors_models.UID: detectors_models.build,
}


def render(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    return {OUT_DIR / f"{uid}.json": render(build()) for uid, build in BUILDERS.items()}


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered().items() if _read(path) != text]
    if "--check" in argv:
        for path in stale:
            print(f"stale: {path} (run python -m dashboards.build)", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
