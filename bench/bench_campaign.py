"""One engine's campaign update (contributions -> one KeyOwner -> fill), per window.

Records the inputs of every CampaignState.update of a replay of the benchmarks' corpus,
then times the updates alone over those windows; with --against REV, side by side with the
CampaignState of a revision from before the split (its window.py passed only repeated
prompts, so that mask is made inside its timing, as it was).

    python bench/bench_campaign.py [--accounts 2000] [--hours 24] [--repeats 5] [--against a5ea4ee]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import corpus_batches, median_time  # noqa: E402
from streams.features.campaign import CampaignState  # noqa: E402
from streams.features.window import COL  # noqa: E402
from tests.unit.features.test_campaign_split import Window, _record  # noqa: E402


def _at(rev: str) -> types.ModuleType:
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(
        ["git", "show", f"{rev}:streams/features/campaign.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    mod = types.ModuleType(f"campaign_at_{rev}")
    exec(compile(src, f"{rev}:streams/features/campaign.py", "exec"), mod.__dict__)
    return mod


def _repeated(codes: np.ndarray) -> np.ndarray:
    _, inv, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return counts[inv] > 1


def _run(make, windows: list[Window], old: bool) -> list[tuple[np.ndarray, list]]:
    state = make()
    out = []
    for w in windows:
        src = w.sources
        if old:
            src = {**src, "prompt": (src["prompt"][0], _repeated(src["prompt"][0]))}
        X = w.before.copy()
        ev = state.update(w.window_end, w.gid, w.order, w.account_ids, src, w.texts, X, COL)
        out.append((X, ev))
    return out


def _differences(a: list[tuple[np.ndarray, list]], b: list[tuple[np.ndarray, list]]) -> str:
    """How two runs' features and evidence differ, row by row."""
    x = ev = listed = members = 0
    for (xa, ea), (xb, eb) in zip(a, b, strict=True):
        x += int((~((xa == xb) | (np.isnan(xa) & np.isnan(xb)))).any(axis=1).sum())
        for da, db in zip(ea, eb, strict=True):
            if da == db:
                continue
            ev += 1
            if da and db and {**da, "accounts": 0} == {**db, "accounts": 0}:
                listed += 1
                members += set(da["accounts"]) != set(db["accounts"])
    return (
        f"rows with other features {x}; rows with other evidence {ev}, of which only the "
        f"accounts listed differ {listed} (other accounts, not only another order: {members})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--against", help="a git revision from before the split")
    ap.add_argument("--data", type=Path, default=Path("data/bench"))
    args = ap.parse_args()
    lines, _ = corpus_batches(args.data, args.accounts, args.hours)
    rec = _record(lines)
    windows = rec.windows
    rows = sum(len(w.account_ids) for w in windows)
    idx = rec.index["subnet"]

    def make() -> CampaignState:
        return CampaignState(idx.horizon_s, idx.max_keys, rec.free_daily_tokens)

    runs = [("this build", make, False)]
    if args.against:
        then = _at(args.against)
        runs.append(
            (
                args.against,
                lambda: then.CampaignState(idx.horizon_s, idx.max_keys, rec.free_daily_tokens),
                True,
            )
        )
    print(f"{len(lines):,} events, {len(windows)} windows, {rows:,} account-windows")
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for _ in range(args.repeats):  # taken in turns, so that a busy moment hits both
        for name, fn, is_old in runs:
            times[name] += median_time(lambda: _run(fn, windows, is_old), 1)[1]  # noqa: B023
    for name, all_ in times.items():
        med = statistics.median(all_)
        print(
            f"campaign update, {name:<10}: median {med:.3f} s, "
            f"{med / rows * 1e6:6.2f} us/account-window (runs {[round(t, 3) for t in all_]})"
        )
    if len(runs) == 2:
        (_, new, _), (rev, old, _) = runs
        print(
            f"this build against {rev}: "
            + _differences(_run(new, windows, False), _run(old, windows, True))
        )


if __name__ == "__main__":
    main()
