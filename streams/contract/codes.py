"""64-bit codes for strings (account ids, IPs, user agents, prompt hashes...).

The compiled decoder writes them and `code` computes the same value for one string:
SipHash-2-4 of its UTF-8 bytes under a per-deployment secret key (`engine.hash_key`, or
VIGIL_HASH_KEY). Without the key nobody can choose strings whose codes collide, so
crafted ids can neither merge two accounts nor crowd the dedup table. Every process given
the same key makes the same codes, so they can be kept in checkpointed state; checkpoints
record the key's fingerprint and refuse to load under another key. 0 stands for an absent
(empty) value.

The key is process-wide: it is set here at import (the documented demo key) and again by
every Engine from its config, before anything is decoded.
"""

from __future__ import annotations

import hashlib

from streams.contract._decode import account_codes, code, set_key

# Checkpoints record it: state written with other codes must not be mixed with these.
CODES_VERSION = 3
# The demo's key: fine for `make demo` and tests, not for a deployment (anyone can read
# it here); the worker logs a warning when it runs with it.
DEMO_HASH_KEY = "vigil-demo-hash-key-not-a-secret"

__all__ = [
    "CODES_VERSION",
    "DEMO_HASH_KEY",
    "account_codes",
    "code",
    "key_fingerprint",
    "subnet_of",
    "use_key",
]

_current: tuple[str, int] | None = None
_fingerprint = ""


def use_key(secret: str, account_bits: int = 64) -> str:
    """Make `secret` the process's hash key; returns its fingerprint.

    The 32 key bytes are derived from the secret with BLAKE2b, so any string of enough
    entropy will do. `account_bits` below 64 is a test-only mode that truncates account
    codes so that accounts collide; the fingerprint says so.
    """
    global _current, _fingerprint
    if (secret, account_bits) == _current:
        return _fingerprint
    if not secret:
        raise ValueError("the hash key must not be empty")
    raw = hashlib.blake2b(secret.encode(), digest_size=32, person=b"vigil-codes").digest()
    set_key(raw, account_bits)
    fp = hashlib.blake2b(raw, digest_size=8, person=b"vigil-keyfp").hexdigest()
    _fingerprint = fp if account_bits == 64 else f"{fp}/{account_bits}"
    _current = (secret, account_bits)
    return _fingerprint


def key_fingerprint() -> str:
    """A short public digest of the key in use: equal keys, equal fingerprints."""
    return _fingerprint


use_key(DEMO_HASH_KEY)


def subnet_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) block of an IP; _decode.c spells it the same way."""
    if not ip:
        return ""
    if "." in ip and ":" not in ip:
        return ip.rsplit(".", 1)[0] + ".0/24"
    parts = ip.split(":")
    return ":".join(parts[:3]) + "::/48"
