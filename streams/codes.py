"""64-bit codes for strings (IPs, user agents, prompt hashes...).

Two kinds. `fast` codes come from Python's own string hash: cheap, but salted per process,
so they only group values within one window. `stable` codes are the same in every process
and are what checkpointed state (history rings, campaign indexes) holds; they are computed
only for the few distinct values that reach state, with a bounded cache.
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

    @staticmethod
    def fast(col: np.ndarray) -> np.ndarray:
        """Per-process codes; the empty string (absent) hashes to 0 in CPython."""
        return np.fromiter(map(hash, col.tolist()), dtype=np.int64, count=len(col)).view(np.uint64)

    def stable(self, values: list[str]) -> np.ndarray:
        cache = self._codes
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        get = cache.get
        codes = [get(v) for v in values]
        if None in codes:
            for i, c in enumerate(codes):
                if c is None:
                    v = values[i]
                    codes[i] = cache[v] = stable_code(v)
        return np.array(codes, dtype=np.uint64)

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
