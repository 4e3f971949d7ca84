"""`make demo-live`: live dashboards without Kafka, docker or Grafana.

Starts, on loopback, a paced `vigil replay` with /metrics and a store, the analyst console on
that store (with its /metrics and the runbooks), a simulated analyst who gives verdicts
through the console's API, and the Debian `prometheus` binary scraping both with the alert
rules loaded. When the input ends it draws every dashboard with `vigil dashboards render`
into OUT/dashboards/ and stops everything it started.

python -m dashboards.demo_live --out data/demo-live [--speed 90] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
VIGIL = str(Path(sys.executable).with_name("vigil"))
SCRAPE_S = 2
INSTALL_HINT = "prometheus is not installed: `sudo apt-get install -y prometheus`"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str = "", data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[:2]} exited {proc.returncode}: {log.read_text()[-800:]}"
            )
        try:
            get(url)
            return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout_s:.0f} s")


@dataclass
class LiveDemo:
    """The running pieces; `metric(name)` reads the replay's own /metrics."""

    out: Path
    replay_port: int
    console_port: int
    prometheus_url: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    verdicts: int = 0

    def metric(self, name: str) -> float:
        text = get(f"http://127.0.0.1:{self.replay_port}/metrics").decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )


def start(stack: ExitStack, out: Path, events: Path, speed: float) -> LiveDemo:
    """Start console, Prometheus, replay and the analyst; `stack` stops them in reverse."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        raise RuntimeError(INSTALL_HINT)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "vigil.db"
    store.unlink(missing_ok=True)
    demo = LiveDemo(out, free_port(), free_port(), f"http://127.0.0.1:{free_port()}")

    def spawn(name: str, cmd: list[str], **kw) -> subprocess.Popen:  # noqa: ANN003
        log = (out / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        stack.callback(_stop, proc, log)
        demo.procs.append(proc)
        return proc

    token = _analyst_token(store)
    console = spawn(
        "console",
        [
            VIGIL,
            "console",
            "--store",
            str(store),
            "--port",
            str(demo.console_port),
            "--backlog-sla",
            "critical=60",
            "--backlog-sla",
            "high=120",
        ],
    )
    wait_http(f"http://127.0.0.1:{demo.console_port}/healthz", console, out / "console.log")
    prom_dir = out / "prometheus"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir()
    config = _prometheus_config(prom_dir, demo)
    prom = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={prom_dir / 'tsdb'}",
            f"--web.listen-address={demo.prometheus_url.removeprefix('http://')}",
            "--log.level=warn",
        ],
    )
    wait_http(f"{demo.prometheus_url}/-/ready", prom, out / "prometheus.log")
    spawn(
        "replay",
        [
            VIGIL,
            "replay",
            str(events),
            "--speed",
            str(speed),
            "--metrics-port",
            str(demo.replay_port),
            "--store",
            str(store),
            "--alerts",
            str(out / "alerts.jsonl"),
            "--dead-letters",
            str(out / "dead-letters.jsonl"),
            "--hold",
        ],
    )
    stop = threading.Event()
    stack.callback(stop.set)
    threading.Thread(target=_analyst, args=(demo, token, stop), daemon=True).start()
    return demo


def _stop(proc: subprocess.Popen, log) -> None:  # noqa: ANN001
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    log.close()


def _analyst_token(store: Path) -> str:
    add = [VIGIL, "console-user", "add", "demo-analyst", "--role", "analyst", "--password-stdin"]
    subprocess.run(
        [*add, "--store", str(store)],
        input="demo-analyst-pw\n",
        text=True,
        check=True,
        capture_output=True,
    )
    tok = [VIGIL, "console-user", "token", "demo-analyst", "--store", str(store)]
    return subprocess.run(tok, check=True, capture_output=True, text=True).stdout.strip()


def _analyst(demo: LiveDemo, token: str, stop: threading.Event) -> None:
    """Gives the oldest open alert a verdict every few seconds, as one analyst on shift."""
    base = f"http://127.0.0.1:{demo.console_port}"
    verdicts = ("false_positive", "misuse", "needs_info")
    while not stop.wait(3.0):
        try:
            queue = json.loads(get(f"{base}/api/alerts?status=open&per_page=50", token))
            items = queue.get("alerts") or queue.get("items") or []
            if not items:
                continue
            alert = items[0]  # most severe, newest first: the queue's own order
            verdict = verdicts[demo.verdicts % 3]
            body = {"verdict": verdict, "note": "demo-live analyst"}
            if verdict == "misuse":
                body["category"] = alert.get("category", "anomaly")
            url = f"{base}/api/alerts/{urllib.request.quote(alert['alert_id'], safe='')}/verdict"
            get(url, token, json.dumps(body).encode())
            demo.verdicts += 1
        except (OSError, ValueError, KeyError):
            continue  # the console may be busy or stopping; the next round tries again


def _prometheus_config(work: Path, demo: LiveDemo) -> Path:
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "evaluation_interval": f"{SCRAPE_S}s",
            "external_labels": {"runbook_base": f"http://127.0.0.1:{demo.console_port}/runbooks"},
        },
        "rule_files": [str(p) for p in RULES],
        "scrape_configs": [
            {
                "job_name": "vigil-replay",
                "static_configs": [{"targets": [f"127.0.0.1:{demo.replay_port}"]}],
            },
            {
                "job_name": "vigil-console",
                "static_configs": [{"targets": [f"127.0.0.1:{demo.console_port}"]}],
            },
        ],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_for_input(demo: LiveDemo, lines: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in demo.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:2]} exited {proc.returncode}; logs in {demo.out}")
        try:
            if demo.metric("vigil_events_read_total") >= lines:
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the replay did not read {lines:,} lines in {timeout_s:.0f} s")


def count_lines(path: Path) -> int:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return sum(1 for _ in fh)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/demo-live"))
    ap.add_argument("--events", type=Path, help="events file (default: generate one into OUT)")
    ap.add_argument("--speed", type=float, default=90.0, help="event time x real time")
    ap.add_argument(
        "--render-at",
        type=float,
        default=0.9,
        help="draw the dashboards once this share of the input is read (the stream still flows)",
    )
    args = ap.parse_args(argv)
    if not args.speed > 0:
        ap.error("--speed must be above 0")
    if not 0 < args.render_at <= 1:
        ap.error("--render-at must be in (0, 1]")
    events = args.events or args.out / "events.jsonl.gz"
    if not events.exists():
        gen = [VIGIL, "generate", "--accounts", "300", "--hours", "6", "--seed", "3"]
        subprocess.run([*gen, "--out", str(events.parent)], check=True)
    lines = count_lines(events)
    print(f"replaying {lines:,} events at {args.speed:g}x real time", flush=True)
    t0 = time.time()
    with ExitStack() as stack:
        try:
            demo = start(stack, args.out, events, args.speed)
            print(
                f"Prometheus {demo.prometheus_url}  console http://127.0.0.1:{demo.console_port}"
                f"  replay metrics http://127.0.0.1:{demo.replay_port}/metrics",
                flush=True,
            )
            wait_for_input(demo, int(lines * args.render_at), timeout_s=3600)
            time.sleep(2 * SCRAPE_S)  # the last values scraped and the rules evaluated
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        minutes = (time.time() - t0) / 60 + 0.5
        render = [
            VIGIL,
            "dashboards",
            "render",
            "--prometheus",
            demo.prometheus_url,
            "--out",
            str(args.out / "dashboards"),
            "--minutes",
            f"{minutes:.2f}",
            "--rate-interval",
            "30s",
        ]
        done = subprocess.run(render)
        print(f"{demo.verdicts} verdicts given by the demo analyst", flush=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
