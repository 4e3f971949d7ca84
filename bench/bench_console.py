"""Console page load times with 10k alerts in the store.

Fills a fresh store (SQLite by default, or --store URL) with N alerts over 1,000 accounts
plus a day of snapshots for one account, serves the console on loopback, signs in, and
times full HTTP round trips for the queue page (plain, filtered, deep page), the JSON
queue and an account page. Prints median and p95 per page; the target is a queue page
median under 300 ms.

    python bench/bench_console.py [--alerts 10000] [--runs 30] [--store URL]
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


def make_alerts(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    sev = ("low", "medium", "high", "critical")
    out = []
    for i in range(n):
        start = T0 + rng.randrange(0, 7 * 288) * 300
        dets = rng.sample(DETECTORS, rng.randint(1, 3))
        out.append(
            {
                "alert_id": hashlib.sha1(f"bench-{seed}-{i}".encode()).hexdigest()[:24],
                "account_id": f"acct_{rng.randrange(1000):05d}",
                "ts": rfc3339(start + 310),
                "severity": rng.choices(sev, weights=(50, 30, 15, 5))[0],
                "score": round(rng.uniform(0.5, 1.0), 3),
                "category": rng.choice(CATEGORIES),
                "detectors": [{"name": d, "score": round(rng.uniform(0.3, 1), 3)} for d in dets],
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
                "related_accounts": [],
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
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--store", default="", help="store URL; default a fresh SQLite file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{tmp}/bench.db"
        store = open_store(url)
        alerts = make_alerts(args.alerts)
        t = time.perf_counter()
        for i in range(0, len(alerts), 1000):
            store.write_alerts(alerts[i : i + 1000])
        write_s = time.perf_counter() - t
        account = alerts[0]["account_id"]
        store.write_snapshots(make_snapshots(account))
        add_user(store, "bench", "viewer", "bench-password")
        with serve(create_app(store, AuthSettings())) as base, httpx.Client(base_url=base) as c:
            c.post("/api/session", json={"name": "bench", "password": "bench-password"})
            pages = {
                "queue page 1 (/alerts)": "/alerts",
                "queue filtered (high+, open, key_leak)": (
                    "/alerts?severity=high&status=open&category=key_leak"
                ),
                "queue by detector + account search": "/alerts?detector=iforest&account=acct_0",
                "queue page 100": "/alerts?page=100",
                "JSON queue (/api/alerts)": "/api/alerts",
                f"account page ({account}, 288 windows)": f"/accounts/{account}",
            }
            results = {name: timed(c, path, args.runs) for name, path in pages.items()}
        store.close()
    print(
        f"store: {url.split('://')[0]}, {args.alerts} alerts written in {write_s:.2f} s "
        f"({args.alerts / write_s:,.0f}/s); {args.runs} runs per page"
    )
    print(f"{'page':<48} {'median ms':>10} {'p95 ms':>8}")
    for name, times in results.items():
        p95 = statistics.quantiles(times, n=20)[-1]
        print(f"{name:<48} {statistics.median(times):>10.1f} {p95:>8.1f}")
    queue_median = statistics.median(results["queue page 1 (/alerts)"])
    ok = queue_median < TARGET_MS
    print(
        f"queue page median {queue_median:.1f} ms vs target {TARGET_MS:.0f} ms: "
        f"{'PASS' if ok else 'FAIL'} (ratio {queue_median / TARGET_MS:.2f})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
