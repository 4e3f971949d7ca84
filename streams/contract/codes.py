"""64-bit codes for strings (account ids, IPs, user agents, prompt hashes...).

The compiled decoder writes them and `code` computes the same value for one string: a
fixed hash of its UTF-8 bytes, so codes are equal in every process and can be kept in
checkpointed state. 0 stands for an absent (empty) value. A collision between two of the
values one account or one campaign index holds would need a 64-bit coincidence; the hash
is not keyed, so it is not meant to resist values crafted to collide.
"""

from __future__ import annotations

from streams.contract._decode import code

# Checkpoints record it: state written with other codes must not be mixed with these.
CODES_VERSION = 2

__all__ = ["CODES_VERSION", "code", "subnet_of"]


def subnet_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) block of an IP; _decode.c spells it the same way."""
    if not ip:
        return ""
    if "." in ip and ":" not in ip:
        return ip.rsplit(".", 1)[0] + ".0/24"
    parts = ip.split(":")
    return ":".join(parts[:3]) + "::/48"
