"""`vigil generate`: a synthetic API-usage stream with ground truth.

The stream is reproducible from its seed. Events come out in near event-time order with
a little realistic disorder (within the allowed lateness), a few duplicates re-sent by a
retrying producer, and, unless disabled, a handful of malformed lines and very late events
so that every dead-letter path is exercised by the demo.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from synth.hard_negatives import behaviour_traffic, cohorts, pick_behaviour
from synth.scenarios import plan_incidents
from synth.traffic import Traffic, benign_traffic, make_account

DEFAULT_START = 1_790_812_800.0  # 2026-10-01T00:00:00Z
BAD_LINES = (
    b'{"event_id": "broken", "ts": ',
    b"\xff\xfe not utf-8",
    b'["an", "array"]',
    b'{"ts": "2026-10-01T00:00:00Z", "account_id": "acct_x", "endpoint": "chat.completions"}',
    b'{"event_id": "neg", "ts": 1790812800, "account_id": "acct_x", "endpoint": "embeddings", "prompt_tokens": -5}',
    b'{"event_id": "typ", "ts": 1790812800, "account_id": 42, "endpoint": "embeddings"}',
)


@dataclass(frozen=True)
class GenerateResult:
    events: int
    accounts: int
    misuse_accounts: int
    events_path: Path
    labels_path: Path


def _events(tr: Traffic, account_id: str, plan: str, created: float) -> list[dict]:
    n = len(tr.ts)
    if n == 0:
        return []
    stamps = np.datetime_as_string((tr.ts * 1000).astype("datetime64[ms]"), timezone="UTC")
    created_s = np.datetime_as_string(
        np.array([created * 1000]).astype("datetime64[ms]"), timezone="UTC"
    )[0]
    out = []
    for i in range(n):
        ev = {
            "ts": str(stamps[i]),
            "account_id": account_id,
            "endpoint": tr.endpoint[i],
            "api_key_id": tr.key[i],
            "model": tr.model[i],
            "prompt_tokens": int(tr.prompt_tokens[i]),
            "completion_tokens": int(tr.completion_tokens[i]),
            "status": int(tr.status[i]),
            "latency_ms": float(tr.latency_ms[i]),
            "ip": tr.ip[i],
            "country": tr.country[i],
            "user_agent": tr.ua[i],
            "plan": plan,
            "account_created": str(created_s),
            "finish_reason": tr.finish[i],
            "prompt_hash": tr.prompt_hash[i],
        }
        if tr.flagged[i] or tr.moderation[i] > 0.2:
            ev["flagged"] = bool(tr.flagged[i])
            ev["moderation"] = {str(tr.mod_category[i]): round(float(tr.moderation[i]), 3)}
        out.append(ev)
    return out


def generate(
    out_dir: Path,
    accounts: int,
    hours: float,
    seed: int,
    start: float = DEFAULT_START,
    bad_rate: float = 1e-4,
    progress=None,
) -> GenerateResult:
    rng = np.random.default_rng(seed)
    t1 = start + hours * 3600
    population = [make_account(rng, i, start) for i in range(accounts)]
    for a in population:
        a.behaviour = pick_behaviour(rng, a, start)
    incidents = plan_incidents(rng, population, start, hours)
    # Victims keep their own traffic, but a behaviour would blur what misuse looks like.
    for inc in incidents:
        inc.account.behaviour = ""
    groups = cohorts(rng, 10 * accounts, accounts, start, hours)
    labels: dict[str, dict] = {
        a.account_id: {
            "label": "benign",
            "onset": None,
            "end": None,
            "campaign": None,
            "plan": a.plan,
            "behaviour": a.behaviour or None,
        }
        for a in population
    }
    rows: list[tuple[float, dict]] = []

    def add(tr: Traffic, acct) -> None:
        for ev in _events(tr, acct.account_id, acct.plan, acct.created):
            rows.append((0.0, ev))

    for i, acct in enumerate(population):
        add(benign_traffic(rng, acct, start, t1, behaviour_traffic), acct)
        if progress:
            progress(i + 1, accounts)
    for acct, tr, kind in groups:
        add(tr, acct)
        labels[acct.account_id] = {
            "label": "benign",
            "onset": None,
            "end": None,
            "campaign": None,
            "plan": acct.plan,
            "behaviour": kind,
        }
    for inc in incidents:
        if not len(inc.traffic.ts):
            continue  # a throw-away account created after the end of a short span
        add(inc.traffic, inc.account)
        labels[inc.account.account_id] = {
            "label": inc.scenario,
            "onset": inc.onset,
            "end": float(inc.traffic.ts[-1]) if len(inc.traffic.ts) else inc.onset,
            "campaign": inc.campaign,
            "plan": inc.account.plan,
            "behaviour": None,
        }
    events = [ev for _, ev in rows]
    ts = np.array(
        [np.datetime64(ev["ts"].rstrip("Z"), "ms").astype(np.int64) / 1000 for ev in events]
    )
    # Producers deliver slightly out of order: 2% arrive up to 45 s late.
    delay = np.where(rng.random(len(ts)) < 0.02, rng.uniform(0, 45, len(ts)), 0.0)
    n_late = int(len(ts) * bad_rate)
    late_idx = rng.choice(len(ts), size=n_late, replace=False) if n_late else np.empty(0, int)
    delay[late_idx] = rng.uniform(900, 1800, n_late)
    order = np.argsort(ts + delay, kind="stable")
    for k, ev in enumerate(events):
        ev["event_id"] = f"evt_{seed}_{k:09d}"
        if k % 10 == 3:  # some producers send epoch seconds instead of RFC 3339
            ev["ts"] = round(float(ts[k]), 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / "events.jsonl.gz"
    dup_every = 2000
    n_dup = n_bad = 0
    with gzip.open(events_path, "wb", compresslevel=3) as fh:
        for j, k in enumerate(order):
            line = orjson.dumps(events[k])
            fh.write(line + b"\n")
            if j % dup_every == dup_every - 1:
                fh.write(line + b"\n")  # a retrying producer re-sends an event
                n_dup += 1
            if bad_rate and rng.random() < bad_rate:
                fh.write(BAD_LINES[n_bad % len(BAD_LINES)] + b"\n")
                n_bad += 1
    misuse = sum(1 for v in labels.values() if v["label"] != "benign")
    labels_path = out_dir / "labels.json"
    labels_path.write_bytes(
        orjson.dumps(
            {
                "seed": seed,
                "start": start,
                "end": t1,
                "hours": hours,
                "events": len(events),
                "injected": {"malformed": n_bad, "late": n_late, "duplicates": n_dup},
                "accounts": labels,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    return GenerateResult(len(events), len(labels), misuse, events_path, labels_path)


def generated(cache: Path, accounts: int, hours: float, seed: int) -> tuple[Path, Path]:
    """Generate (or reuse) a corpus; the seed makes it the same every time."""
    d = cache / f"a{accounts}-h{hours:g}-s{seed}"
    events, labels = d / "events.jsonl.gz", d / "labels.json"
    if not (events.exists() and labels.exists()):
        generate(d, accounts, hours, seed, bad_rate=0.0)
    return events, labels
