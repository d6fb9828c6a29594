"""Event-to-delivery latency of lifecycle webhooks, against a live server.

Starts the real server (manage.py serve) on a free loopback port, a receiver on
loopback that verifies each signature, and a webhook on `create`. Then N times
(default 20): POST /v1/sandboxes, wait for the signed delivery, DELETE the sandbox.
Latency = arrival at the receiver minus the event's `occurred_at` (one clock).
Two set-ups: the worker inside the server (woken when the event commits), and
`serve --no-worker` with a separate `manage.py worker` process (woken by PostgreSQL
`NOTIFY`, or on SQLite finding the job by polling every 0.25 s). Prints median, p90
and max. Bounded: N sandboxes per set-up,
loopback only.

    .venv/bin/python bench/webhook_latency_bench.py [-n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.webhooks.secrets import new_signing_secret  # noqa: E402
from tests.live import remove_tree, start_live_server  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (
        f"| {name:<40} | {len(samples):>3} | {statistics.median(samples):>9.1f} "
        f"| {p90:>8.1f} | {max(samples):>8.1f} |"
    )


def measure(n: int, separate_worker: bool) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    receiver = Receiver(secret=new_signing_secret()).start()
    server = start_live_server(tmp, worker=not separate_worker, WEBHOOK_ALLOW_PRIVATE_TARGETS="1")
    worker = None
    try:
        if separate_worker:
            worker = subprocess.Popen(
                [sys.executable, "manage.py", "worker", "--threads", "2"],
                cwd=ROOT,
                env=server.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
        )
        api.post(
            "/v1/lifecycle/webhooks",
            json={"url": receiver.url, "operations": ["create"], "signing_secret": receiver.secret},
        ).raise_for_status()
        latencies = []
        for i in range(n):
            created = api.post("/v1/sandboxes", json={"template": "base"})
            created.raise_for_status()
            got = receiver.wait_for(lambda seen, i=i: len(seen) > i, timeout=30)[i]
            assert got.verified, "bad signature"
            occurred = datetime.fromisoformat(
                got.body["data"]["occurred_at"].replace("Z", "+00:00")
            )
            latencies.append((got.at - occurred.timestamp()) * 1000)
            api.delete(f"/v1/sandboxes/{created.json()['id']}").raise_for_status()
        return latencies
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop()
        receiver.stop()
        remove_tree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="events per set-up (at most 200)")
    args = parser.parse_args()
    n = max(1, min(200, args.n))
    print(
        f"# webhook event-to-delivery latency, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    print("| set-up                                   |   n | median ms |   p90 ms |   max ms |")
    print("|---|---:|---:|---:|---:|")
    print(row("worker in the server (woken at commit)", measure(n, separate_worker=False)))
    print(row("separate `manage.py worker`", measure(n, separate_worker=True)))


if __name__ == "__main__":
    main()
