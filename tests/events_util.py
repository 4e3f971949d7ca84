"""Hand-made events for tests."""

from __future__ import annotations

import itertools

import orjson

T0 = 1_790_812_800.0  # 2026-10-01T00:00:00Z
_ids = itertools.count()


def event(**over) -> dict:
    ev = {
        "event_id": f"t{next(_ids)}",
        "ts": T0,
        "account_id": "acct_a",
        "endpoint": "chat.completions",
        "api_key_id": "k1",
        "model": "gpt-small",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "status": 200,
        "ip": "203.0.113.5",
        "country": "DE",
        "user_agent": "openai-python/1.54.3",
        "plan": "payg",
        "account_created": "2026-01-01T00:00:00Z",
        "finish_reason": "stop",
        "prompt_hash": "aa",
    }
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not ...}


def line(**over) -> bytes:
    return orjson.dumps(event(**over))
