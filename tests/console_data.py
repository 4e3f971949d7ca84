"""Realistic alerts and snapshot rows in the engine's contract, for the console's tests."""

from __future__ import annotations

import hashlib
import random

from streams.core.alerts import rfc3339

T0 = 1_795_000_000.0  # a fixed Monday, so runs are repeatable
WINDOW = 300.0
XSS = "<script>window.__pwned=1</script>"
XSS_ACCOUNT = 'acct-<script>window.__pwned=1</script>"x'
CAMPAIGN = ("acct-spam-1", "acct-spam-2", "acct-spam-3", "acct-spam-4")
KEY_LEAK = "acct-leak-1"


def _snapshot(
    account: str,
    i: int,
    plan: str,
    features: dict,
    ips: list[str],
    countries: list[str],
    uas: list[str],
    prompts: list[str],
    key: str,
) -> dict:
    start = T0 + i * WINDOW
    return {
        "account_id": account,
        "window_start": rfc3339(start),
        "window_end": rfc3339(start + WINDOW),
        "plan": plan,
        "features": features,
        "ips": ips,
        "countries": countries,
        "user_agents": uas,
        "api_keys": [key],
        "prompt_hashes": prompts,
        "subnets": sorted({ip.rsplit(".", 1)[0] + ".0/24" for ip in ips}),
    }


def _alert(
    account: str,
    i: int,
    severity: str,
    score: float,
    category: str,
    detectors: dict[str, float],
    reasons: list[tuple[str, float, float, str]],
    related: list[str] | None = None,
) -> dict:
    start = T0 + i * WINDOW
    return {
        "alert_id": hashlib.sha1(f"{account}|{i}|{category}".encode()).hexdigest()[:20],
        "account_id": account,
        "ts": rfc3339(start + WINDOW + 5),
        "severity": severity,
        "score": score,
        "category": category,
        "detectors": [{"name": n, "score": s} for n, s in detectors.items()],
        "reasons": [{"feature": f, "value": v, "baseline": b, "text": t} for f, v, b, t in reasons],
        "window": {"start": rfc3339(start), "end": rfc3339(start + WINDOW)},
        "model_version": "iforest-2026.11",
        "related_accounts": related or [],
    }


def demo_dataset(
    windows: int = 48, normal_accounts: int = 12, seed: int = 3
) -> tuple[list[dict], list[dict]]:
    """(alerts, snapshots): a key leak, a four-account spam campaign, background accounts,
    and an account whose id and user agent carry a script payload."""
    rng = random.Random(seed)
    snaps: list[dict] = []
    alerts: list[dict] = []
    spam_prompts = [f"ph-spam-{k}" for k in range(3)]
    for a in range(normal_accounts):
        acct = f"acct-normal-{a:03d}"
        for i in range(windows):
            snaps.append(
                _snapshot(
                    acct,
                    i,
                    "pro",
                    {
                        "requests": rng.randint(20, 60),
                        "tokens": rng.randint(4000, 9000),
                        "errors": rng.randint(0, 2),
                        "moderation_flags": 0,
                        "new_ips": 1 if i == 0 else 0,
                    },
                    [f"10.{a}.0.7"],
                    ["DE"],
                    ["python-httpx/0.28"],
                    [f"ph-n{a}-{i % 5}"],
                    f"k-n{a}",
                )
            )
    onset = windows // 2
    for i in range(windows):
        leaked = i >= onset
        ips = ["10.99.0.5"] + ([f"185.220.{i}.{k}" for k in range(6)] if leaked else [])
        snaps.append(
            _snapshot(
                KEY_LEAK,
                i,
                "enterprise",
                {
                    "requests": (400 if leaked else 50) + rng.randint(0, 20),
                    "tokens": (90_000 if leaked else 8_000) + rng.randint(0, 500),
                    "errors": 12 if leaked else 1,
                    "moderation_flags": 3 if leaked else 0,
                    "new_ips": 6 if leaked else (1 if i == 0 else 0),
                },
                ips,
                ["US"] + (["RU", "BR", "VN"] if leaked else []),
                ["corp-client/2.1"] + (["curl/8.5"] if leaked else []),
                [f"ph-leak-{i}"],
                "k-leak",
            )
        )
        if leaked and i < onset + 4:
            alerts.append(
                _alert(
                    KEY_LEAK,
                    i,
                    "critical" if i > onset else "high",
                    0.97 if i > onset else 0.88,
                    "key_leak",
                    {"iforest": 0.91, "baseline": 0.86, "geo_velocity": 0.95},
                    [
                        ("new_ips", 6, 0.02, "6 new IPs in 4 countries within one window"),
                        ("requests", 410, 52, "requests 8x the account's usual rate"),
                    ],
                )
            )
    for idx, acct in enumerate(CAMPAIGN):
        for i in range(windows):
            active = i >= 10
            snaps.append(
                _snapshot(
                    acct,
                    i,
                    "free",
                    {
                        "requests": 300 if active else 0,
                        "tokens": 60_000 if active else 0,
                        "errors": 0,
                        "moderation_flags": 9 if active else 0,
                        "new_ips": 1 if i == 10 else 0,
                    },
                    [f"203.0.113.{10 + idx}"],
                    ["NL"],
                    ["spambot/1.0"] if active else [],
                    spam_prompts if active else [],
                    f"k-spam-{idx}",
                )
            )
        alerts.append(
            _alert(
                acct,
                12 + idx,
                "high",
                0.9,
                "spam_campaign",
                {"campaign": 0.93, "iforest": 0.7, "free_tier_token_quota": 0.4},
                [
                    ("shared_prompt_accounts", 4, 1, "the same prompts were sent from 4 accounts"),
                    ("moderation_flags", 9, 0, "9 moderation flags in one window"),
                ],
                [c for c in CAMPAIGN if c != acct],
            )
        )
    for i in range(6):
        snaps.append(
            _snapshot(
                XSS_ACCOUNT,
                i,
                "free",
                {
                    "requests": 30 + i,
                    "tokens": 1000,
                    "errors": 0,
                    "moderation_flags": 0,
                    "new_ips": 0,
                },
                ["198.51.100.9"],
                ["FR"],
                [XSS],
                ["ph-x"],
                "k-x",
            )
        )
    alerts.append(
        _alert(
            XSS_ACCOUNT,
            5,
            "medium",
            0.66,
            "anomaly",
            {"iforest": 0.66},
            [("requests", 35, 30, f"user agent {XSS} is new")],
        )
    )
    for a in range(normal_accounts):
        i = rng.randrange(windows)
        alerts.append(
            _alert(
                f"acct-normal-{a:03d}",
                i,
                rng.choice(["low", "medium"]),
                round(rng.uniform(0.5, 0.7), 3),
                rng.choice(["anomaly", "distillation"]),
                {"iforest": 0.6, "baseline": 0.55},
                [("tokens", 9000, 6000, "tokens 1.5x the usual")],
            )
        )
    return alerts, snaps


STORM = tuple(f"acct-storm-{k:02d}" for k in range(10))
FIVE = ("population", "classifier", "rules", "baseline", "campaign")


def storm_dataset(windows: int = 48) -> tuple[list[dict], list[dict]]:
    """demo_dataset plus an alert storm: a ten-account spam campaign with three alerts per
    account, each listing all five detectors as fusion does, most of them at 0."""
    alerts, snaps = demo_dataset(windows)
    prompts = [f"ph-storm-{k}" for k in range(4)]
    for idx, acct in enumerate(STORM):
        for i in range(windows):
            active = i >= 30
            snaps.append(
                _snapshot(
                    acct,
                    i,
                    "free",
                    {
                        "requests": 200 + 10 * idx + (i * 37 + idx * 11) % 60 if active else 0,
                        "tokens": 40_000 if active else 0,
                        "errors": 0,
                        "moderation_flags": 6 if active else 0,
                        "new_ips": 1 if i == 30 else 0,
                    },
                    [f"192.0.2.{20 + idx}"],
                    ["PL"],
                    ["python-requests/2.32"] if active else [],
                    prompts if active else [],
                    f"k-storm-{idx}",
                )
            )
        for n in range(3):
            scores = {"campaign": 0.96, "classifier": 0.62 if n == 0 else 0.3}
            scores.update({d: 0.0 for d in FIVE if d not in scores})
            alerts.append(
                _alert(
                    acct,
                    30 + idx // 2 + n * 5,
                    "critical" if n == 2 else "high",
                    0.93,
                    "spam_campaign",
                    scores,
                    [("shared_prompt_accounts", 10, 1, "the same prompts from 10 accounts")],
                    [c for c in STORM if c != acct],
                )
            )
    return alerts, snaps
