"""Benign traffic for the generator: heavy-tailed accounts with daily cycles.

It includes the hard negatives a real platform sees: batch-job bursts, travel and office
moves that bring new IPs or a new country, cron-like regular clients, fiction writers who
trip the content filter now and then, and brand-new free accounts that stay small; and
the named behaviours and cohorts of `synth/hard_negatives.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

COUNTRIES = (
    "US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "NL", "SE", "ES", "IT", "KR", "SG",
    "MX", "PL", "ZA", "NG", "VN", "ID", "TR", "AR", "UA", "RU", "CN", "EG", "PH", "TH", "CO",
)  # fmt: skip
TZ_OFFSET_H = {"US": -6, "CA": -5, "MX": -6, "BR": -3, "AR": -3, "CO": -5, "GB": 0, "DE": 1,
               "FR": 1, "NL": 1, "SE": 1, "ES": 1, "IT": 1, "PL": 1, "UA": 2, "ZA": 2, "EG": 2,
               "NG": 1, "TR": 3, "RU": 3, "IN": 5, "VN": 7, "TH": 7, "ID": 7, "SG": 8,
               "PH": 8, "CN": 8, "JP": 9, "KR": 9, "AU": 10}  # fmt: skip
MODELS = ("gpt-small", "gpt-medium", "gpt-large", "embed-v3", "image-gen-2", "reasoner-xl")
SDK_UAS = (
    "openai-python/1.54.3", "openai-python/1.40.0", "openai-node/4.67.1", "langchain/0.3.7",
    "python-httpx/0.27.2", "Go-http-client/1.1", "okhttp/4.12.0", "llama-index/0.11.20",
)  # fmt: skip
PLANS = ("free", "payg", "enterprise")
DAY = 86_400.0


@dataclass
class Account:
    account_id: str
    plan: str
    created: float
    country: str
    ips: list[str]
    uas: list[str]
    models: list[str]
    model_p: np.ndarray
    keys: list[str]
    base_rate: float  # mean requests per second
    diurnal: bool
    templates: list[str]
    extra_countries: list[str] = field(default_factory=list)
    behaviour: str = ""  # a benign but unusual behaviour (synth/hard_negatives.py)


def _ip(rng: np.random.Generator, subnet: str | None = None) -> str:
    if subnet is None:
        a = int(rng.integers(11, 223))
        subnet = f"{a}.{int(rng.integers(0, 256))}.{int(rng.integers(0, 256))}"
    return f"{subnet}.{int(rng.integers(1, 255))}"


def _hash(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**62)):016x}"


def make_account(rng: np.random.Generator, idx: int, start: float) -> Account:
    plan = PLANS[int(rng.choice(3, p=[0.6, 0.35, 0.05]))]
    # Requests per day: lognormal per plan, so sizes are heavy-tailed within and across plans.
    median = {"free": 12.0, "payg": 120.0, "enterprise": 2500.0}[plan]
    per_day = min(median * float(rng.lognormal(0.0, 1.1)), 30_000.0)
    country = COUNTRIES[int(rng.integers(0, len(COUNTRIES)))]
    n_ips = 1 + int(rng.poisson(0.7))
    if plan == "enterprise":
        subnets = [_ip(rng).rsplit(".", 1)[0] for _ in range(int(rng.integers(1, 4)))]
        ips = [
            _ip(rng, subnets[int(rng.integers(0, len(subnets)))])
            for _ in range(rng.integers(4, 25))
        ]
        extra = [COUNTRIES[int(rng.integers(0, len(COUNTRIES)))] for _ in range(rng.integers(0, 3))]
    else:
        ips = [_ip(rng) for _ in range(n_ips)]
        extra = []
    n_models = int(rng.integers(1, 4))
    models = list(rng.choice(MODELS[:4], size=n_models, replace=False))
    # 4% of accounts are brand new on the day: hard negatives for farming and campaigns.
    age_days = (
        float(rng.uniform(-1.0, 0.0)) if rng.random() < 0.04 else float(rng.lognormal(4.5, 1.2))
    )
    return Account(
        account_id=f"acct_{idx:06d}",
        plan=plan,
        created=start - age_days * DAY,
        country=country,
        ips=ips,
        uas=list(rng.choice(SDK_UAS, size=int(rng.integers(1, 3)), replace=False)),
        models=models,
        model_p=rng.dirichlet(np.ones(n_models) * 2.0),
        keys=[f"key_{idx:06d}_{k}" for k in range(int(rng.integers(1, 4)))],
        base_rate=per_day / DAY,
        diurnal=rng.random() < 0.8,
        templates=[_hash(rng) for _ in range(int(rng.integers(3, 30)))],
        extra_countries=extra,
    )


def rate_profile(t: np.ndarray, acct: Account) -> np.ndarray:
    """Relative request rate at times t: a working-hours bump in the account's time zone."""
    if not acct.diurnal:
        return np.ones_like(t)
    local_h = ((t / 3600.0) + TZ_OFFSET_H.get(acct.country, 0)) % 24
    bump = np.exp(-0.5 * ((local_h - 14.0) / 3.5) ** 2)
    return 0.2 + 2.6 * bump  # averages to roughly 1 over a day


def poisson_times(
    rng: np.random.Generator, t0: float, t1: float, rate_fn, peak: float
) -> np.ndarray:
    """Event times of a non-homogeneous Poisson process by thinning."""
    if t1 <= t0:
        return np.empty(0)  # e.g. an account created after the period ends
    n = rng.poisson(peak * (t1 - t0))
    if n == 0:
        return np.empty(0)
    t = np.sort(rng.uniform(t0, t1, n))
    keep = rng.random(n) < rate_fn(t) / peak
    return t[keep]


@dataclass
class Traffic:
    """Per-event columns for one account, before they are merged and serialised."""

    ts: np.ndarray
    ip: list[str]
    country: list[str]
    ua: list[str]
    model: list[str]
    endpoint: list[str]
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    status: np.ndarray
    finish: list[str]
    flagged: np.ndarray
    moderation: np.ndarray  # top category score
    mod_category: list[str]
    prompt_hash: list[str]
    key: list[str]
    latency_ms: np.ndarray


# An account's named benign behaviour (synth/hard_negatives.py), given its usual request
# times: (rng, behaviour, account, times, t0, t1) -> its traffic.
Behaviours = Callable[[np.random.Generator, str, "Account", np.ndarray, float, float], "Traffic"]


def benign_traffic(
    rng: np.random.Generator,
    acct: Account,
    t0: float,
    t1: float,
    behaviours: Behaviours | None = None,
) -> Traffic:
    peak = acct.base_rate * 2.8

    def rate(t: np.ndarray) -> np.ndarray:
        return acct.base_rate * rate_profile(t, acct)

    ts = poisson_times(rng, max(t0, acct.created), t1, rate, max(peak, 1e-9))
    if rng.random() < 0.12:  # a batch job: 4-15x the usual rate for 15-60 minutes
        b0 = float(rng.uniform(t0, max(t0, t1 - 3600)))
        dur = float(rng.uniform(900, 3600))
        burst_rate = max(acct.base_rate * float(rng.uniform(4, 15)), 20 / dur)
        ts = np.sort(np.concatenate([ts, rng.uniform(b0, b0 + dur, rng.poisson(burst_rate * dur))]))
    if acct.plan != "enterprise" and rng.random() < 0.05:  # cron-like client, once a minute
        c0 = float(rng.uniform(t0, max(t0, t1 - 7200)))
        cron = np.arange(c0, min(c0 + float(rng.uniform(3600, 14400)), t1), 60.0)
        ts = np.sort(np.concatenate([ts, cron + rng.normal(0, 0.5, len(cron))]))
    if acct.behaviour:
        if behaviours is None:
            raise ValueError(f"account {acct.account_id} has behaviour {acct.behaviour!r}")
        return behaviours(rng, acct.behaviour, acct, ts, t0, t1)
    n = len(ts)
    ips = np.array(acct.ips, dtype=object)[rng.integers(0, len(acct.ips), n)]
    countries = np.full(n, acct.country, dtype=object)
    if acct.extra_countries:
        alt = rng.random(n) < 0.2
        countries[alt] = np.array(acct.extra_countries, dtype=object)[
            rng.integers(0, len(acct.extra_countries), int(alt.sum()))
        ]
    if n and rng.random() < 0.15:  # benign move: a new IP, sometimes abroad (travel)
        switch = float(rng.uniform(t0, t1))
        moved = ts >= switch
        ips[moved] = _ip(rng)
        if rng.random() < 0.35:
            countries[moved] = COUNTRIES[int(rng.integers(0, len(COUNTRIES)))]
    return _fill(rng, acct, ts, ips, countries, writer=rng.random() < 0.03)


def _fill(
    rng: np.random.Generator,
    acct: Account,
    ts: np.ndarray,
    ips: np.ndarray,
    countries: np.ndarray,
    writer: bool = False,
) -> Traffic:
    n = len(ts)
    model_idx = rng.choice(len(acct.models), size=n, p=acct.model_p)
    models = np.array(acct.models, dtype=object)[model_idx]
    endpoint = np.where(
        models == "embed-v3",
        "embeddings",
        np.where(models == "image-gen-2", "images.generate", "chat.completions"),
    ).astype(object)
    scale = 4.0 if acct.plan == "enterprise" else 1.0
    pt = (rng.lognormal(5.5, 1.0, n) * scale).astype(np.int64)
    ct = np.where(endpoint == "embeddings", 0, (rng.lognormal(5.0, 1.0, n)).astype(np.int64))
    u = rng.random(n)
    status = np.where(u < 0.004, 500, np.where(u < 0.007, 429, np.where(u < 0.008, 400, 200)))
    status = np.where(rng.random(n) < 0.0005, 401, status)
    filt_p = 0.06 if writer else 0.002
    f = rng.random(n)
    finish = np.where(
        f < filt_p,
        "content_filter",
        np.where(f < 0.08, "length", np.where(f < 0.1, "tool_calls", "stop")),
    )
    finish = np.where(endpoint == "chat.completions", finish, "stop").astype(object)
    mod = rng.beta(0.4, 12, n)
    mod = np.where(finish == "content_filter", rng.uniform(0.5, 0.95, n), mod)
    flagged = mod > 0.5
    templ = np.array(acct.templates, dtype=object)[rng.integers(0, len(acct.templates), n)]
    fresh = rng.random(n) < 0.7
    hashes = [_hash(rng) if fr else tp for fr, tp in zip(fresh, templ, strict=True)]
    return Traffic(
        ts=ts,
        ip=list(ips),
        country=list(countries),
        ua=list(np.array(acct.uas, dtype=object)[rng.integers(0, len(acct.uas), n)]),
        model=list(models),
        endpoint=list(endpoint),
        prompt_tokens=pt,
        completion_tokens=ct,
        status=status,
        finish=list(finish),
        flagged=flagged,
        moderation=mod,
        mod_category=list(rng.choice(("violence", "hate", "sexual", "self_harm"), size=n)),
        prompt_hash=hashes,
        key=list(np.array(acct.keys, dtype=object)[rng.integers(0, len(acct.keys), n)]),
        latency_ms=rng.lognormal(6.3, 0.6, n).round(1),
    )
