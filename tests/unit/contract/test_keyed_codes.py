"""Issue 19, finding 2: string codes are keyed, so crafted strings no longer collide.

Before, the unkeyed hash could be inverted: a 16-character account id with the same code
as a victim's merged the two identities, and crafted event ids crowded one probe run of
the dedup table. Codes are now SipHash-2-4 under a per-deployment key; checkpoints record
the key's fingerprint; colliding account codes are detected and kept apart.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streams.contract import _decode
from streams.contract.codes import DEMO_HASH_KEY, account_codes, code, key_fingerprint, use_key
from streams.contract.events import decode_lines
from streams.contract.seen import EMPTY, IdSet, add_new
from streams.core.config import ConfigError, VigilConfig
from streams.core.config_load import config_from_dict, from_env
from streams.engine.engine import Engine
from tests.collide_util import craft, craft_clustered, old_code
from tests.events_util import T0, line

OTHER_KEY = "another-deployment-secret-0123456789"
M = (1 << 64) - 1


@pytest.fixture(autouse=True)
def demo_key():
    """Every test leaves the process with the demo key, as the others expect."""
    yield
    use_key(DEMO_HASH_KEY)


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M


def siphash24_py(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 from its definition, to check the compiled one against."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]  # fmt: skip

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & M
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    full = len(msg) - len(msg) % 8
    blocks = [msg[i : i + 8] for i in range(0, full, 8)]
    blocks.append(msg[full:].ljust(7, b"\0") + bytes([len(msg) & 0xFF]))
    for b in blocks:
        m = int.from_bytes(b, "little")
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_siphash_matches_its_definition() -> None:
    key = bytes(range(16))
    # The test vector of the SipHash paper (appendix A): 15 bytes 00..0e under key 00..0f.
    assert _decode.siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    rng = np.random.default_rng(5)
    for n in list(range(40)) + [255, 256, 1000]:
        k, msg = rng.bytes(16), rng.bytes(n)
        assert _decode.siphash24(k, msg) == siphash24_py(k, msg), n


def test_codes_depend_on_the_key_and_only_on_it() -> None:
    lines = [line(account_id=f"acct_{i}", event_id=f"e{i}", ip=f"10.0.{i}.1") for i in range(50)]
    demo, _ = decode_lines(lines, now_ts=T0 + 3600)
    fp_demo = key_fingerprint()
    use_key(OTHER_KEY)
    other, _ = decode_lines(lines, now_ts=T0 + 3600)
    assert key_fingerprint() != fp_demo
    for col in ("event_id", "account_id", "account_check", "ip", "subnet", "user_agent"):
        assert not np.intersect1d(getattr(demo, col), getattr(other, col)).size, col
    assert code("acct_1") == int(other.account_id[1])
    # Another process given the same key makes the same codes (the worker's processes
    # repartition and checkpoint by them).
    script = (
        "from streams.contract.codes import use_key, code, account_codes;"
        f"use_key({OTHER_KEY!r}); print(code('acct_1'), *account_codes('acct_1'))"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert r.stdout.split() == [str(code("acct_1")), *map(str, account_codes("acct_1"))]


def test_the_key_comes_from_config_or_the_environment(tmp_path: Path) -> None:
    assert VigilConfig().engine.hash_key == DEMO_HASH_KEY
    cfg = config_from_dict({"engine": {"hash_key": OTHER_KEY}})
    assert cfg.engine.hash_key == OTHER_KEY
    assert from_env(VigilConfig(), {"VIGIL_HASH_KEY": OTHER_KEY}).engine.hash_key == OTHER_KEY
    with pytest.raises(ConfigError, match="engine.hash_key"):
        config_from_dict({"engine": {"hash_key": "short"}})
    Engine(cfg)
    assert code("x") == _decode.code("x") != 0
    assert key_fingerprint() == use_key(OTHER_KEY)


def test_crafted_account_ids_no_longer_collide() -> None:
    """An id made to collide with a victim's under the old hash has its own code now."""
    rng = np.random.default_rng(19)
    victim = b"acct_000141"
    forged = craft(old_code(victim), rng)
    assert old_code(forged) == old_code(victim), "the crafted pair collides under the old hash"
    assert code(forged) != code(victim)
    assert account_codes(forged)[1] != account_codes(victim)[1]


def _longest_probe(table: np.ndarray) -> int:
    """The longest distance of an id from its first slot (as _seen.c's first_slot)."""
    cap = len(table)
    shift = np.uint64(64 - (cap.bit_length() - 1))
    held = np.flatnonzero(table)
    with np.errstate(over="ignore"):
        home = (table[held] * np.uint64(0x9E3779B97F4A7C15)) >> shift
    return int(((held - home.astype(np.int64)) % cap).max())


def test_crafted_event_ids_do_not_crowd_the_dedup_table() -> None:
    """Regression: 100k crafted ids took 4.4 s to insert (2 ms for random ones), because
    they all started their probe in one slot. Keyed codes scatter them."""
    ids = craft_clustered(1000, np.random.default_rng(23))
    C = 0x9E3779B97F4A7C15
    assert len({(old_code(s) * C & M) >> 48 for s in ids}) == 1, "one slot under the old hash"
    batch, dead = decode_lines([line(event_id=s.decode()) for s in ids], now_ts=T0 + 3600)
    assert dead == [] and len(batch) == len(ids)
    seen = IdSet()
    assert add_new(seen, EMPTY, batch.event_id).all()
    assert _longest_probe(seen.table) < 40, "the crafted ids are spread over the table"


def test_checkpoints_refuse_another_key(tmp_path: Path) -> None:
    engine = Engine()
    engine.process_lines([line(event_id=f"e{i}", ts=T0 + i) for i in range(10)])
    state = engine.state_dict()
    assert state["hash_key"] == key_fingerprint() == engine.key_fingerprint
    other = Engine(config_from_dict({"engine": {"hash_key": OTHER_KEY}}))
    with pytest.raises(ValueError, match="another hash key") as err:
        other.load_state_dict(state)
    assert "\n" not in str(err.value)
    # The worker's checkpoint format carries the fingerprint through as well.
    from streams.kafka.checkpoint import decode_state, encode_state

    worker_state = decode_state(encode_state(engine.state_dict(pending=False)))
    with pytest.raises(ValueError, match="another hash key"):
        Engine(config_from_dict({"engine": {"hash_key": OTHER_KEY}})).load_state_dict(worker_state)
    Engine().load_state_dict(worker_state)  # the same key resumes
    # The replay command says so in one line.
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps(state, protocol=5))
    env = {**os.environ, "VIGIL_HASH_KEY": OTHER_KEY}
    r = subprocess.run(
        [sys.executable, "-m", "streams", "replay", "-", "--state", str(path)],
        input=b"",
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert r.returncode != 0
    err_lines = r.stderr.decode().strip().splitlines()
    assert len(err_lines) == 1 and "another hash key" in err_lines[0], err_lines
