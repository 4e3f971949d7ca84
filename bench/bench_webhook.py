"""What the webhook sink costs the engine, and how fast it delivers to a loopback receiver.

Side by side: `write` (what the engine's thread pays: filter, encode, enqueue) per alert;
then delivery of N alerts end to end, first write to the last 2xx, against a receiver in
another process that keeps connections alive, and one that closes each (`Connection:
close`, so every alert pays a new TCP connection). Medians over repeats.
    .venv/bin/python bench/bench_webhook.py [--alerts 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import http.server
import logging
import multiprocessing
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from bench.common import median_time  # noqa: E402
from streams.core.alerts import Alert, DetectorScore, Reason  # noqa: E402
from streams.core.config import WebhookConfig  # noqa: E402
from streams.engine.engine import Output  # noqa: E402
from streams.engine.webhook_metrics import WebhookMetrics  # noqa: E402
from streams.runtime.webhook import WebhookSink  # noqa: E402


def serve(port: int, keep_alive: bool) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            if not keep_alive:
                self.send_header("Connection", "close")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alerts(n: int, tag: str) -> list[Alert]:
    return [
        Alert(
            alert_id=f"{tag}-{i}",
            account_id=f"acct-{i}",
            ts="2026-10-01T00:05:00Z",
            severity="high",
            score=0.91,
            category="key_leak",
            detectors=[DetectorScore("rules", 0.9), DetectorScore("baseline", 0.7)],
            reasons=[Reason("countries", 4.0, 1.0, "4 countries in one window, usually 1")],
            window={"start": "2026-10-01T00:00:00Z", "end": "2026-10-01T00:05:00Z"},
            model_version="clf-bench",
        )
        for i in range(n)
    ]


def deliver(url: str, batch: list[Alert]) -> None:
    registry = CollectorRegistry()
    dead: list = []
    cfg = WebhookConfig(url=url, secret="bench-secret", queue_size=len(batch) + 1)
    sink = WebhookSink(cfg, WebhookMetrics(registry), dead.append)
    sink.write(Output(alerts=batch))
    while (registry.get_sample_value("vigil_webhook_sent_total") or 0) < len(batch):
        if dead:
            raise RuntimeError(f"dead-lettered: {dead[0].detail}")
        time.sleep(0.001)
    sink.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()

    # The engine's side, with nobody listening: write() never waits for the receiver.
    logging.getLogger("streams.runtime.webhook").setLevel(logging.CRITICAL)
    port = free_port()
    cfg = WebhookConfig(
        url=f"http://127.0.0.1:{port}/", secret="s", queue_size=10**7, close_timeout_s=0
    )
    sink = WebhookSink(cfg, WebhookMetrics(CollectorRegistry()), lambda dl: None)
    batches = iter([alerts(a.alerts, f"w{r}") for r in range(a.repeats)])
    write_s, _ = median_time(lambda: sink.write(Output(alerts=next(batches))), a.repeats)
    sink.close()

    rows = [("write() per alert, engine thread", f"{write_s / a.alerts * 1e6:.1f} us")]
    for keep_alive in (True, False):
        port = free_port()
        proc = multiprocessing.Process(target=serve, args=(port, keep_alive), daemon=True)
        proc.start()
        time.sleep(0.5)
        try:
            sets = iter([alerts(a.alerts, f"d{r}") for r in range(a.repeats)])
            url = f"http://127.0.0.1:{port}/hook"
            t, _ = median_time(lambda url=url, sets=sets: deliver(url, next(sets)), a.repeats)
        finally:
            proc.terminate()
        label = "kept alive" if keep_alive else "closed per alert"
        rows.append((f"delivery, connection {label}", f"{a.alerts / t:,.0f} alerts/s"))
    print(f"{a.alerts} alerts, median of {a.repeats}")
    for name, value in rows:
        print(f"  {name:<40} {value:>16}")


if __name__ == "__main__":
    main()
