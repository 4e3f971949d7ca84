"""Benign behaviour that looks unusual: what real platforms are full of.

Each established account may get one behaviour (`BEHAVIOURS`) that changes its traffic
without making it misuse; and some groups of brand-new accounts arrive together
(`cohorts`): an organisation onboarding a team behind one NAT, a classroom, a hackathon.
Their labels say `benign` with the behaviour named, so evaluation can report false
alerts per kind and training sees them as hard negatives.
"""

from __future__ import annotations

import numpy as np

from synth.traffic import (
    COUNTRIES,
    DAY,
    MODELS,
    SDK_UAS,
    Account,
    Traffic,
    _fill,
    _hash,
    _ip,
    make_account,
)

# behaviour -> share of established accounts that show it
BEHAVIOURS = {
    "flat_pipeline": 0.01,
    "ci_bot": 0.008,
    "backfill": 0.008,
    "launch": 0.006,
    "travel_vpn": 0.01,
    "key_rotation": 0.01,
    "model_migration": 0.01,
    "multi_office": 0.01,
    "trust_safety": 0.004,
    "red_team": 0.003,
    "templated_app": 0.01,
}


def pick_behaviour(rng: np.random.Generator, acct: Account, start: float) -> str:
    """One behaviour or none, only for accounts older than a week."""
    if acct.created > start - 7 * DAY:
        return ""
    u = float(rng.random())
    for name, p in BEHAVIOURS.items():
        if u < p:
            return name
        u -= p
    return ""


def _regular(rng: np.random.Generator, t0: float, t1: float, period: float) -> np.ndarray:
    ts = np.arange(t0, t1, period)
    return ts + rng.normal(0, period * 0.02, len(ts))


def _merge(ts: np.ndarray, extra: np.ndarray) -> np.ndarray:
    return np.sort(np.concatenate([ts, extra]))


def behaviour_times(
    rng: np.random.Generator, kind: str, acct: Account, ts: np.ndarray, t0: float, t1: float
) -> np.ndarray:
    """Request times of an account with this behaviour (volume and timing only)."""
    rate = max(acct.base_rate, 0.002)
    if kind == "flat_pipeline":  # 24/7, machine-regular, no daily cycle
        return _regular(rng, t0, t1, float(rng.uniform(5, 60)))
    if kind == "ci_bot":  # a burst at the top of every hour
        starts = np.arange(np.ceil(t0 / 3600) * 3600, t1, 3600.0)
        n = int(rng.integers(20, 80))
        bursts = [s + np.arange(n) * float(rng.uniform(0.5, 2.0)) for s in starts]
        return _merge(ts, np.concatenate(bursts) if bursts else np.empty(0))
    if kind == "backfill":  # 50-100x the usual volume for hours
        b0 = float(rng.uniform(t0, max(t0, t1 - 6 * 3600)))
        b1 = min(t1, b0 + float(rng.uniform(2, 6)) * 3600)
        k = max(rate * float(rng.uniform(50, 100)), 0.3)
        return _merge(ts, np.sort(rng.uniform(b0, b1, rng.poisson(k * max(b1 - b0, 0.0)))))
    if kind == "launch":  # 10-30x from launch time to the end
        b0 = float(rng.uniform(t0, max(t0, t1 - 4 * 3600)))
        k = max(rate * float(rng.uniform(10, 30)), 0.1)
        return _merge(ts, np.sort(rng.uniform(b0, t1, rng.poisson(k * max(t1 - b0, 0.0)))))
    return ts


def apply_behaviour(
    rng: np.random.Generator, kind: str, acct: Account, ts: np.ndarray, t0: float, t1: float
) -> Traffic:
    """The account's benign traffic with the behaviour's content, places and clients."""
    n = len(ts)
    ips = np.array(acct.ips, dtype=object)[rng.integers(0, len(acct.ips), n)]
    countries = np.full(n, acct.country, dtype=object)
    switch = float(rng.uniform(t0 + 2 * 3600, max(t0 + 2 * 3600, t1 - 2 * 3600)))
    later = ts >= switch
    if kind == "multi_office":  # offices in several countries, all day long
        offices = [(c, _ip(rng)) for c in rng.choice(COUNTRIES, int(rng.integers(2, 4)))]
        pick = rng.integers(0, len(offices) + 1, n)
        for j, (c, ip) in enumerate(offices):
            countries[pick == j + 1], ips[pick == j + 1] = c, ip
    if kind == "travel_vpn":  # abroad from `switch`, with VPN sessions back home
        abroad, vpn_ip = str(rng.choice(COUNTRIES)), _ip(rng)
        session = (np.floor(ts / 3600) % 3 == 0) & later  # every third hour on the VPN
        countries[later & ~session], ips[later & ~session] = abroad, _ip(rng)
        ips[session] = vpn_ip
    if kind == "flat_pipeline":
        acct = _with(acct, uas=acct.uas[:1])
    tr = _fill(rng, acct, ts, ips, countries)
    if kind == "key_rotation":
        fresh = [f"{k}_r" for k in acct.keys]
        tr.key = [
            fresh[i % len(fresh)] if lt else k
            for i, (k, lt) in enumerate(zip(tr.key, later, strict=True))
        ]
    if kind == "model_migration":
        new = str(rng.choice([m for m in MODELS[:3] if m not in acct.models] or MODELS[:1]))
        tr.model = [new if lt else m for m, lt in zip(tr.model, later, strict=True)]
    if kind in ("trust_safety", "red_team"):
        _harmful_content(rng, tr, red_team=kind == "red_team")
    if kind == "templated_app":
        templ = [_hash(rng) for _ in range(int(rng.integers(1, 4)))]
        tr.prompt_hash = list(np.array(templ, dtype=object)[rng.integers(0, len(templ), n)])
    return tr


def _with(acct: Account, **changes) -> Account:
    return Account(**{**acct.__dict__, **changes})


def _harmful_content(rng: np.random.Generator, tr: Traffic, red_team: bool) -> None:
    """A moderation vendor or a red team: harmful content is the job, all day long."""
    n = len(tr.ts)
    hot = rng.random(n) < (0.5 if red_team else 0.4)
    tr.moderation = np.where(hot, rng.uniform(0.5, 0.98, n), tr.moderation)
    tr.flagged = tr.moderation > 0.5
    filt = hot & (rng.random(n) < (0.5 if red_team else 0.1))
    tr.finish = list(np.where(filt, "content_filter", np.array(tr.finish, dtype=object)))
    if red_team:  # an attack library, replayed against each model
        lib = [_hash(rng) for _ in range(int(rng.integers(20, 60)))]
        tr.prompt_hash = list(np.array(lib, dtype=object)[rng.integers(0, len(lib), n)])


def cohorts(
    rng: np.random.Generator, first_idx: int, n_accounts: int, start: float, hours: float
) -> list[tuple[Account, Traffic, str]]:
    """Groups of new accounts that arrive together and are benign."""
    t1 = start + hours * 3600
    out: list[tuple[Account, Traffic, str]] = []
    idx = first_idx
    n_groups = max(1, round(n_accounts / 1000))
    for g in range(n_groups * 3):
        kind = ("org_onboarding", "classroom", "hackathon")[g % 3]
        size = int(rng.integers(8, 25) if kind == "org_onboarding" else rng.integers(20, 40))
        c0 = start + float(rng.uniform(1, max(1.5, hours - 6))) * 3600
        subnet = _ip(rng).rsplit(".", 1)[0]
        nat = [_ip(rng, subnet) for _ in range(int(rng.integers(1, 3)))]
        ua = str(rng.choice(SDK_UAS))
        tutorial = [_hash(rng) for _ in range(int(rng.integers(1, 4)))]
        country = str(rng.choice(COUNTRIES))
        for _ in range(size):
            a = make_account(rng, idx, start)
            idx += 1
            a.plan = "free" if kind != "org_onboarding" else str(rng.choice(("free", "payg")))
            a.created = c0 + float(rng.uniform(0, 3600 if kind == "org_onboarding" else 1800))
            a.country, a.ips, a.uas = country, nat, [ua]
            span = float(rng.uniform(2, 6)) * 3600 if kind != "org_onboarding" else t1 - a.created
            per_s = float(
                rng.uniform(0.005, 0.03) if kind == "hackathon" else rng.uniform(1e-3, 8e-3)
            )
            stop = min(t1, a.created + span)
            # A cohort that would arrive after a short span ends sends nothing.
            n = rng.poisson(per_s * span) if stop > a.created + 60 else 0
            ts = np.sort(rng.uniform(a.created + 60, max(stop, a.created + 60), n))
            tr = _fill(
                rng,
                a,
                ts,
                np.array(nat, dtype=object)[rng.integers(0, len(nat), len(ts))],
                np.full(len(ts), country, dtype=object),
            )
            # Everyone runs the tutorial's prompts first.
            k = min(len(ts), int(rng.integers(1, 4)))
            tr.prompt_hash[:k] = list(rng.choice(tutorial, k))
            out.append((a, tr, kind))
    return out


def behaviour_traffic(
    rng: np.random.Generator, behaviour: str, acct: Account, ts: np.ndarray, t0: float, t1: float
) -> Traffic:
    """The traffic of an account with a named behaviour, from its usual request times:
    what `traffic.benign_traffic` hands over to this module."""
    ts = behaviour_times(rng, behaviour, acct, ts, max(t0, acct.created), t1)
    return apply_behaviour(rng, behaviour, acct, ts, t0, t1)
