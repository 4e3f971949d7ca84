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

SCENARIOS = MISUSE_CATEGORIES
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
    for fn, name in ((spam_campaign, "spam_campaign"), (free_tier_farming, "free_tier_farming")):
        for c in range(max(1, round(per / 4))):
            onset = onset_time()
            k = int(rng.integers(5, 9))
            accts = throwaway_accounts(rng, next_idx, k, onset, start)
            next_idx += k
            for acct, tr in zip(accts, fn(rng, accts, onset, t1), strict=True):
                first = float(tr.ts[0]) if len(tr.ts) else onset
                incidents.append(Incident(acct, tr, name, first, f"{name}-{c}"))
    return incidents
