"""Console page load times with 10k alerts over 2k accounts in the store.

Fills a fresh store (SQLite by default, or --store URL) with N alerts over M accounts, a
quarter of them in five-account campaigns (so they group into campaign cases), plus a day
of snapshots for one account; serves the console on loopback, signs in, and times full
HTTP round trips for the case queue (plain, filtered, searched, deep page), one case, the
JSON case queue, the alert queue and an account page. Prints median and p95 per page; the
target is a case queue page median under 300 ms.

    python bench/bench_console.py [--alerts 10000] [--accounts 2000] [--runs 30] [--store URL]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from console.app import create_app  # noqa: E402
from console.auth import AuthSettings  # noqa: E402
from console.store import open_store  # noqa: E402
from console.users import add_user  # noqa: E402
from streams.core.alerts import CATEGORIES, rfc3339  # noqa: E402
from tests.console_live import serve  # noqa: E402

TARGET_MS = 300.0
T0 = 1_790_812_800.0
DETECTORS = ("classifier", "series", "iforest", "campaign", "request_rate_ceiling")


def make_alerts(n: int, accounts: int = 2000, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    sev = ("low", "medium", "high", "critical")
    # The first quarter of the accounts form campaigns of five.
    in_campaigns = accounts // 4 // 5 * 5
    out = []
    for i in range(n):
        start = T0 + rng.randrange(0, 7 * 288) * 300
        # Every detector is listed, as fusion does; only some score above the threshold.
        dets = set(rng.sample(DETECTORS, rng.randint(1, 3)))
        k = rng.randrange(accounts)
        group = (
            [f"acct_{j:05d}" for j in range(k // 5 * 5, k // 5 * 5 + 5) if j != k]
            if k < in_campaigns
            else []
        )
        out.append(
            {
                "alert_id": hashlib.sha1(f"bench-{seed}-{i}".encode()).hexdigest()[:24],
                "account_id": f"acct_{k:05d}",
                "ts": rfc3339(start + 310),
                "severity": rng.choices(sev, weights=(50, 30, 15, 5))[0],
                "score": round(rng.uniform(0.5, 1.0), 3),
                "category": rng.choice(CATEGORIES),
                "detectors": [
                    {"name": d, "score": round(rng.uniform(0.5, 1), 3) if d in dets else 0.0}
                    for d in DETECTORS
                ],
                "reasons": [
                    {
                        "feature": "requests",
                        "value": 900.0,
                        "baseline": 60.0,
                        "text": "requests 15x the account's usual rate",
                    }
                ],
                "window": {"start": rfc3339(start), "end": rfc3339(start + 300)},
                "model_version": "bench",
                "related_accounts": group,
            }
        )
    return out


def make_snapshots(account: str, windows: int = 288) -> list[dict]:
    rng = random.Random(2)
    return [
        {
            "account_id": account,
            "window_start": rfc3339(T0 + i * 300),
            "window_end": rfc3339(T0 + i * 300 + 300),
            "plan": "pro",
            "features": {
                "requests": rng.randint(20, 90),
                "tokens": rng.randint(1e3, 9e4),
                "error_rate": rng.random() / 20,
                "flagged_rate": 0.0,
                "new_ips": 0,
            },
            "ips": [f"10.0.{i % 7}.1"],
            "countries": ["DE"],
            "user_agents": ["sdk/1.2"],
            "api_keys": ["k1"],
            "prompt_hashes": [f"p{i % 50}"],
            "subnets": [f"10.0.{i % 7}.0/24"],
        }
        for i in range(windows)
    ]


def timed(client: httpx.Client, path: str, runs: int) -> list[float]:
    client.get(path).raise_for_status()  # warm caches and the connection
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--store", default="", help="store URL; default a fresh SQLite file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{tmp}/bench.db"
        store = open_store(url)
        alerts = make_alerts(args.alerts, args.accounts)
        t = time.perf_counter()
        for i in range(0, len(alerts), 1000):
            store.write_alerts(alerts[i : i + 1000])
        write_s = time.perf_counter() - t
        if store.dialect == "postgresql":
            # A live store has planner statistics (autovacuum); a table filled a second ago
            # does not yet, and the planner would guess row counts from nothing.
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        account = alerts[0]["account_id"]
        store.write_snapshots(make_snapshots(account))
        add_user(store, "bench", "viewer", "bench-password")
        with serve(create_app(store, AuthSettings())) as base, httpx.Client(base_url=base) as c:
            c.post("/api/session", json={"name": "bench", "password": "bench-password"})
            cases = c.get("/api/cases", params={"per_page": 500}).json()
            campaign = next(x["case_id"] for x in cases["items"] if x["kind"] == "campaign")
            pages = {
                "case queue page 1 (/queue)": "/queue",
                "case queue filtered (high+, key_leak)": "/queue?severity=high&category=key_leak",
                "case queue by detector + search": "/queue?detector=iforest&q=acct_0001",
                "case queue page 20": "/queue?page=20",
                "case queue, all views": "/queue?view=all",
                f"campaign case (/case/{campaign})": f"/case/{campaign}",
                "JSON case queue (/api/cases)": "/api/cases",
                "alert queue page 1 (/alerts)": "/alerts",
                "alert queue by detector": "/alerts?detector=iforest",
                f"account page ({account}, 288 windows)": f"/accounts/{account}",
            }
            results = {name: timed(c, path, args.runs) for name, path in pages.items()}
            n_cases = cases["total"]
        store.close()
    print(
        f"store: {url.split('://')[0]}, {args.alerts} alerts over {args.accounts} accounts "
        f"({n_cases} open cases) written in {write_s:.2f} s "
        f"({args.alerts / write_s:,.0f}/s); {args.runs} runs per page"
    )
    print(f"{'page':<48} {'median ms':>10} {'p95 ms':>8}")
    for name, times in results.items():
        p95 = statistics.quantiles(times, n=20)[-1]
        print(f"{name:<48} {statistics.median(times):>10.1f} {p95:>8.1f}")
    queue_median = statistics.median(results["case queue page 1 (/queue)"])
    ok = queue_median < TARGET_MS
    print(
        f"case queue page median {queue_median:.1f} ms vs target {TARGET_MS:.0f} ms: "
        f"{'PASS' if ok else 'FAIL'} (ratio {queue_median / TARGET_MS:.2f})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
