"""Hostile sign-ins against a real `vigil console` process: memory and guesses.

Starts `vigil console` on loopback with a fresh SQLite store, then

1. sends `--logins` password logins with `--name-kb` KB user names (distinct each time),
   and reports the console's resident memory before and after (VmRSS, /proc);
2. fires `--racers` concurrent wrong-password logins for one real user and reports how
   many were answered 401 (a password was checked) against the limit of 5.

Issue 19 measured the old console at 82 -> 371 MiB after 3,000 logins with 100 KB names,
and about 40 checked guesses per window instead of 5. To measure another checkout (for
example the code before the fix), pass its root with --code; it is put first on PYTHONPATH.

    python bench/bench_login_flood.py [--logins 3000] [--name-kb 100] [--racers 40] [--code DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def vigil(env: dict, *args: str, **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    # `python -m` puts the working directory first on sys.path: run from the checkout.
    cwd = env["PYTHONPATH"]
    return subprocess.Popen([sys.executable, "-m", "streams", *args], env=env, cwd=cwd, **kw)


def wait_up(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(base + "/healthz", timeout=2)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the console did not start") from None
            time.sleep(0.2)


def flood(base: str, logins: int, name_kb: int) -> dict[int, int]:
    codes: dict[int, int] = {}
    pad = "x" * (name_kb * 1024)
    with httpx.Client(base_url=base, timeout=60) as c:
        for i in range(logins):
            r = c.post("/api/session", json={"name": f"{i}-{pad}", "password": "wrong"})
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
    return codes


def race(base: str, racers: int) -> dict[int, int]:
    barrier = threading.Barrier(racers)
    codes: dict[int, int] = {}
    lock = threading.Lock()

    def guess(i: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            barrier.wait()
            r = c.post("/api/session", json={"name": "ana", "password": f"guess-{i}"})
        with lock:
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logins", type=int, default=3000)
    ap.add_argument("--name-kb", type=int, default=100)
    ap.add_argument("--racers", type=int, default=40)
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose console to run")
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(a.code.resolve())}
    env.pop("VIGIL_CONSOLE_SECRET", None)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "vigil.db")
        add = vigil(
            env, "console-user", "add", "ana", "--role", "analyst", "--password-stdin",
            "--store", db, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        add.communicate(PASSWORD + "\n", timeout=120)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = vigil(
            env, "console", "--store", db, "--port", str(port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_up(base, proc)
            before = rss_mib(proc.pid)
            t0 = time.perf_counter()
            codes = flood(base, a.logins, a.name_kb)
            took = time.perf_counter() - t0
            after = rss_mib(proc.pid)
            print(
                f"{a.logins} logins with {a.name_kb} KB names in {took:.1f} s: "
                f"RSS {before:.0f} -> {after:.0f} MiB; answers {dict(sorted(codes.items()))}"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # A fresh console for the race, so the flood's address counter does not interfere.
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = vigil(
            env, "console", "--store", db, "--port", str(port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_up(base, proc)
            codes = race(base, a.racers)
            print(
                f"{a.racers} concurrent wrong passwords: {codes.get(401, 0)} checked (401), "
                f"{codes.get(429, 0)} refused (429); the limit is 5"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
