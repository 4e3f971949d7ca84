"""Stable 64-bit codes for strings (IPs, user agents, prompt hashes...).

Codes must be the same in every process, since they are kept in checkpointed state, so
Python's salted `hash()` will not do. Hashing is done once per distinct string per batch,
with a bounded cache for strings that keep coming back.
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

_CACHE_LIMIT = 500_000


def stable_code(s: str) -> int:
    if not s:
        return 0  # 0 means "absent" everywhere
    return int.from_bytes(blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest()) | 1


class Coder:
    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._subnets: dict[str, str] = {}

    def codes(self, col: np.ndarray) -> np.ndarray:
        cache = self._codes
        values = col.tolist()
        missing = set(values).difference(cache)
        if missing:
            if len(cache) + len(missing) > _CACHE_LIMIT:
                cache.clear()
                missing = set(values)
            for s in missing:
                cache[s] = stable_code(s)
        return np.fromiter(map(cache.__getitem__, values), dtype=np.uint64, count=len(values))

    def subnets(self, ips: np.ndarray) -> np.ndarray:
        """The /24 (IPv4) or /48 (IPv6) block of each IP, as strings."""
        cache = self._subnets
        values = ips.tolist()
        for ip in set(values).difference(cache):
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            cache[ip] = subnet_of(ip)
        return np.array([cache[v] for v in values], dtype=object)


def subnet_of(ip: str) -> str:
    if not ip:
        return ""
    if "." in ip and ":" not in ip:
        return ip.rsplit(".", 1)[0] + ".0/24"
    parts = ip.split(":")
    return ":".join(parts[:3]) + "::/48"
