"""Misuse scenarios for the generator, each with an onset time per account."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.core.alerts import MISUSE_CATEGORIES
from synth.traffic import (
    COUNTRIES,
    DAY,
    MODELS,
    Account,
    Traffic,
    _fill,
    _hash,
    _ip,
    make_account,
)

# Low-and-slow scenarios are variants of a category the alerts already name.
CATEGORY = {
    "account_takeover": "key_leak",
    "quota_ring": "free_tier_farming",
    "distillation_spread": "distillation",
}
SCENARIOS = (*MISUSE_CATEGORIES, *CATEGORY)
FREE_DAILY_TOKENS = 250_000  # the generated platform's free allowance (PlatformConfig)
ATTACK_UAS = (
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64)",
    "aiohttp/3.9.1",
)


@dataclass
class Incident:
    account: Account
    traffic: Traffic
    scenario: str
    onset: float
    campaign: str | None


def _uniform_times(rng: np.random.Generator, t0: float, t1: float, rate: float) -> np.ndarray:
    # An account that starts after the end of a short span sends nothing, not an error.
    return np.sort(rng.uniform(t0, max(t0, t1), rng.poisson(rate * max(t1 - t0, 0.0))))


def key_leak(rng: np.random.Generator, acct: Account, onset: float, t1: float) -> Traffic:
    """A leaked key used from many IPs and countries, on expensive models."""
    end = min(t1, onset + float(rng.uniform(2, 8)) * 3600)
    n_ips = int(rng.integers(6, 20))
    ips = [_ip(rng) for _ in range(n_ips)]
    countries = list(rng.choice(COUNTRIES, size=n_ips))
    ts = _uniform_times(rng, onset, end, float(rng.uniform(0.15, 1.0)))
    pick = rng.integers(0, n_ips, len(ts))
    leaked = Account(**{**acct.__dict__})
    leaked.uas = list(rng.choice(ATTACK_UAS, size=2, replace=False))
    leaked.models = ["gpt-large", "reasoner-xl"]
    leaked.model_p = np.array([0.5, 0.5])
    leaked.keys = acct.keys[:1]
    return _fill(
        rng, leaked, ts, np.array(ips, dtype=object)[pick], np.array(countries, dtype=object)[pick]
    )


def distillation(rng: np.random.Generator, acct: Account, onset: float, t1: float) -> Traffic:
    """Scraping a model's outputs: steady, machine-regular, unique prompts, long completions."""
    end = min(t1, onset + float(rng.uniform(4, 12)) * 3600)
    period = float(rng.uniform(0.8, 3.0))
    ts = np.arange(onset, end, period) + rng.normal(
        0, period * 0.08, int(np.ceil((end - onset) / period))
    )
    bot = Account(**{**acct.__dict__})
    bot.models = [str(rng.choice(("gpt-large", "reasoner-xl")))]
    bot.model_p = np.array([1.0])
    bot.uas = [str(rng.choice(ATTACK_UAS))]
    bot.templates = [_hash(rng)]
    tr = _fill(
        rng,
        bot,
        np.sort(ts),
        np.full(len(ts), acct.ips[0], dtype=object),
        np.full(len(ts), acct.country, dtype=object),
    )
    tr.completion_tokens = rng.integers(1500, 4096, len(ts))
    tr.finish = list(np.where(rng.random(len(ts)) < 0.6, "length", "stop"))
    tr.prompt_hash = [_hash(rng) for _ in range(len(ts))]
    return tr


def jailbreak(rng: np.random.Generator, acct: Account, onset: float, t1: float) -> Traffic:
    """Probing the safety filter with variants of the same harmful prompts."""
    end = min(t1, onset + float(rng.uniform(1, 4)) * 3600)
    ts = _uniform_times(rng, onset, end, float(rng.uniform(0.04, 0.15)))
    probe = Account(**{**acct.__dict__})
    probe.models = ["gpt-large"]
    probe.model_p = np.array([1.0])
    probe.templates = [_hash(rng) for _ in range(int(rng.integers(3, 10)))]
    n = len(ts)
    tr = _fill(
        rng,
        probe,
        ts,
        np.array(acct.ips, dtype=object)[rng.integers(0, len(acct.ips), n)],
        np.full(n, acct.country, dtype=object),
    )
    hit = rng.random(n) < float(rng.uniform(0.3, 0.7))
    tr.finish = list(np.where(hit, "content_filter", "stop"))
    tr.moderation = np.where(hit, rng.uniform(0.6, 0.99, n), rng.uniform(0.2, 0.6, n))
    tr.flagged = tr.moderation > 0.5
    tr.prompt_hash = list(
        np.array(probe.templates, dtype=object)[rng.integers(0, len(probe.templates), n)]
    )
    return tr


def credential_stuffing(
    rng: np.random.Generator, targets: list[Account], onset: float, t1: float
) -> list[Traffic]:
    """One attacker subnet tries keys against many accounts; most attempts fail with 401."""
    subnet = _ip(rng).rsplit(".", 1)[0]
    ips = [_ip(rng, subnet) for _ in range(3)]
    country = str(rng.choice(COUNTRIES))
    ua = str(rng.choice(ATTACK_UAS))
    out = []
    for acct in targets:
        start = onset + float(rng.uniform(0, 600))
        ts = _uniform_times(
            rng,
            start,
            min(t1, start + float(rng.uniform(1800, 5400))),
            float(rng.uniform(0.01, 0.04)),
        )
        n = len(ts)
        att = Account(**{**acct.__dict__})
        att.uas = [ua]
        tr = _fill(
            rng,
            att,
            ts,
            np.array(ips, dtype=object)[rng.integers(0, 3, n)],
            np.full(n, country, dtype=object),
        )
        tr.status = np.where(rng.random(n) < 0.9, 401, 200)
        tr.prompt_tokens = np.where(tr.status == 401, 0, tr.prompt_tokens)
        tr.completion_tokens = np.where(tr.status == 401, 0, tr.completion_tokens)
        out.append(tr)
    return out


def throwaway_accounts(
    rng: np.random.Generator, first_idx: int, n: int, onset: float, start: float
) -> list[Account]:
    accts = []
    for i in range(n):
        a = make_account(rng, first_idx + i, start)
        a.plan = "free"
        a.created = onset + i * float(rng.uniform(0, 600)) - float(rng.uniform(60, 1800))
        accts.append(a)
    return accts


def spam_campaign(
    rng: np.random.Generator, accts: list[Account], onset: float, t1: float
) -> list[Traffic]:
    """Throw-away accounts from one subnet and client, sending shared spam templates."""
    subnet = _ip(rng).rsplit(".", 1)[0]
    ua = str(rng.choice(ATTACK_UAS))
    templates = [_hash(rng) for _ in range(int(rng.integers(4, 12)))]
    out = []
    for a in accts:
        start = max(onset, a.created + 60)
        ts = _uniform_times(
            rng,
            start,
            min(t1, start + float(rng.uniform(1, 3)) * 3600),
            float(rng.uniform(0.03, 0.1)),
        )
        n = len(ts)
        a.uas, a.models, a.model_p, a.templates = [ua], ["gpt-small"], np.array([1.0]), templates
        a.ips = [_ip(rng, subnet) for _ in range(2)]
        tr = _fill(
            rng,
            a,
            ts,
            np.array(a.ips, dtype=object)[rng.integers(0, 2, n)],
            np.full(n, a.country, dtype=object),
        )
        tr.prompt_hash = list(np.array(templates, dtype=object)[rng.integers(0, len(templates), n)])
        tr.moderation = rng.uniform(0.3, 0.9, n)
        tr.mod_category = ["spam"] * n
        tr.flagged = tr.moderation > 0.6
        out.append(tr)
    return out


def free_tier_farming(
    rng: np.random.Generator, accts: list[Account], onset: float, t1: float
) -> list[Traffic]:
    """One actor creates free accounts in turn and burns each one's quota on big prompts."""
    subnet = _ip(rng).rsplit(".", 1)[0]
    ua = str(rng.choice(ATTACK_UAS))
    out = []
    for a in accts:
        start = max(onset, a.created + 30)
        ts = _uniform_times(
            rng,
            start,
            min(t1, start + float(rng.uniform(0.5, 2)) * 3600),
            float(rng.uniform(0.1, 0.3)),
        )
        n = len(ts)
        a.uas, a.models, a.model_p = [ua], [str(rng.choice(MODELS[:3]))], np.array([1.0])
        a.ips = [_ip(rng, subnet)]
        tr = _fill(
            rng, a, ts, np.full(n, a.ips[0], dtype=object), np.full(n, a.country, dtype=object)
        )
        tr.prompt_tokens = rng.integers(2000, 6000, n)
        tr.completion_tokens = rng.integers(500, 2000, n)
        out.append(tr)
    return out


def account_takeover(rng: np.random.Generator, acct: Account, onset: float, t1: float) -> Traffic:
    """A key taken over quietly: one new place, beside the owner, growing over hours.

    The owner's own traffic goes on (it is generated as the account's benign traffic);
    the stranger's rate ramps from a fraction of the owner's to several times it, from a
    new country and network, with another client and pricier models.
    """
    end = min(t1, onset + float(rng.uniform(8, 16)) * 3600)
    peak = max(acct.base_rate, 0.003) * float(rng.uniform(2, 5))
    grid = np.sort(rng.uniform(onset, max(onset, end), rng.poisson(peak * max(end - onset, 0))))
    keep = rng.random(len(grid)) < np.clip((grid - onset) / max(end - onset, 1.0), 0.1, 1.0)
    ts = grid[keep]
    thief = Account(**{**acct.__dict__})
    thief.uas = [str(rng.choice(ATTACK_UAS))]
    thief.models, thief.model_p = ["gpt-large", "gpt-medium"], np.array([0.6, 0.4])
    country = str(rng.choice([c for c in COUNTRIES if c != acct.country]))
    ips = [_ip(rng) for _ in range(int(rng.integers(1, 3)))]
    n = len(ts)
    return _fill(
        rng,
        thief,
        ts,
        np.array(ips, dtype=object)[rng.integers(0, len(ips), n)],
        np.full(n, country, dtype=object),
    )


def quota_ring(
    rng: np.random.Generator, accts: list[Account], onset: float, t1: float
) -> list[Traffic]:
    """New free accounts, each under the quota, tied only by a network range and a client.

    Each burns 55-95% of the daily free allowance over hours at a low, steady rate, from
    its own IP in a different /24 of one /16.
    """
    block = _ip(rng).rsplit(".", 2)[0]
    ua = str(rng.choice((*ATTACK_UAS, "Java-http-client/17.0.2", "Go-http-client/2.0")))
    out = []
    for a in accts:
        start = max(onset, a.created + 120)
        dur = float(rng.uniform(3, 8)) * 3600
        budget = FREE_DAILY_TOKENS * float(rng.uniform(0.55, 0.95))
        per_req = float(rng.uniform(1500, 3500))
        n = int(budget / per_req) if start < t1 else 0
        ts = np.sort(rng.uniform(start, max(start, min(t1, start + dur)), n))
        n = len(ts)
        a.uas, a.models, a.model_p = [ua], [str(rng.choice(MODELS[:3]))], np.array([1.0])
        a.ips = [_ip(rng, f"{block}.{int(rng.integers(0, 256))}")]
        tr = _fill(
            rng, a, ts, np.full(n, a.ips[0], dtype=object), np.full(n, a.country, dtype=object)
        )
        tr.prompt_tokens = rng.integers(int(per_req * 0.6), int(per_req * 0.9), n)
        tr.completion_tokens = rng.integers(int(per_req * 0.1), int(per_req * 0.4), n)
        out.append(tr)
    return out


def distillation_spread(
    rng: np.random.Generator, accts: list[Account], onset: float, t1: float
) -> list[Traffic]:
    """Distillation split over several accounts, each well under the rate limits."""
    subnet = _ip(rng).rsplit(".", 1)[0]
    model = str(rng.choice(("gpt-large", "reasoner-xl")))
    ua = str(rng.choice(ATTACK_UAS))
    out = []
    for a in accts:
        start = max(onset, a.created + 60) + float(rng.uniform(0, 1800))
        end = min(t1, start + float(rng.uniform(4, 10)) * 3600)
        period = float(rng.uniform(8, 30))
        ts = np.sort(np.arange(start, max(start, end), period) + rng.normal(0, period * 0.1, 1)[0])
        n = len(ts)
        a.plan = "payg"  # paying accounts: the free quota would stop them
        a.uas, a.models, a.model_p = [ua], [model], np.array([1.0])
        a.ips = [_ip(rng, subnet)]
        tr = _fill(
            rng, a, ts, np.full(n, a.ips[0], dtype=object), np.full(n, a.country, dtype=object)
        )
        tr.completion_tokens = rng.integers(1500, 4096, n)
        tr.finish = list(np.where(rng.random(n) < 0.6, "length", "stop"))
        tr.prompt_hash = [_hash(rng) for _ in range(n)]
        out.append(tr)
    return out


def plan_incidents(
    rng: np.random.Generator, accounts: list[Account], start: float, hours: float
) -> list[Incident]:
    """Pick victims and create throw-away accounts so misuse is about 1.5% of accounts."""
    t1 = start + hours * 3600
    n = len(accounts)
    per = max(1, round(n * 0.015 / 6.5))
    established = [a for a in accounts if a.created < start - 7 * DAY and a.plan != "free"]
    stuffing_campaigns = max(1, round(per / 4))
    need = 3 * per + 10 * stuffing_campaigns  # key leaks etc., then up to 10 per stuffing
    if len(established) < need:
        raise ValueError(
            f"{n} accounts give {len(established)} established paid accounts; the misuse "
            f"scenarios need {need}: generate more accounts"
        )
    victims = list(rng.permutation(len(established)))
    incidents: list[Incident] = []
    next_idx = n

    # Misuse starts after at least two hours of normal traffic, or, in shorter spans,
    # early enough to leave it 45 minutes to show.
    lead = min(2.0, hours - 0.75)

    def onset_time() -> float:
        return start + float(rng.uniform(lead, max(lead + 0.5, hours - 3.0))) * 3600

    for fn, name in (
        (key_leak, "key_leak"),
        (distillation, "distillation"),
        (jailbreak, "jailbreak_probing"),
    ):
        for _ in range(per):
            acct = established[victims.pop()]
            onset = onset_time()
            incidents.append(Incident(acct, fn(rng, acct, onset, t1), name, onset, None))
    for c in range(stuffing_campaigns):
        onset = onset_time()
        targets = [established[victims.pop()] for _ in range(int(rng.integers(6, 11)))]
        for acct, tr in zip(targets, credential_stuffing(rng, targets, onset, t1), strict=True):
            incidents.append(
                Incident(
                    acct,
                    tr,
                    "credential_stuffing",
                    float(tr.ts[0]) if len(tr.ts) else onset,
                    f"stuffing-{c}",
                )
            )
    for _ in range(per):
        acct = established[victims.pop()]
        onset = onset_time()
        tr = account_takeover(rng, acct, onset, t1)
        incidents.append(Incident(acct, tr, "account_takeover", onset, None))
    for fn, name in (
        (spam_campaign, "spam_campaign"),
        (free_tier_farming, "free_tier_farming"),
        (quota_ring, "quota_ring"),
        (distillation_spread, "distillation_spread"),
    ):
        for c in range(max(1, round(per / 4))):
            onset = onset_time()
            k = int(rng.integers(5, 9))
            accts = throwaway_accounts(rng, next_idx, k, onset, start)
            next_idx += k
            for acct, tr in zip(accts, fn(rng, accts, onset, t1), strict=True):
                first = float(tr.ts[0]) if len(tr.ts) else onset
                incidents.append(Incident(acct, tr, name, first, f"{name}-{c}"))
    return incidents
