"""Sandbox create time and exec round trip through the HTTP API, against a live server.

Starts the real server (manage.py serve = uvicorn + worker) on a free loopback port with
its own data directory, then measures, N times each (default 20):
  - POST /v1/sandboxes until the 201 answer (a running sandbox), then DELETE it;
  - POST /v1/sandboxes/{id}/exec of `true` on one running sandbox (blocking exec);
  - the SDK cycle Sandbox.create() -> commands.run("echo", ["ready"]) -> kill(), 30 in a row.
Prints a table of median, p90 and max. Bounded: N requests each, loopback only.

    .venv/bin/python bench/sandbox_api_bench.py [-n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from tests.live import remove_tree, start_live_server  # noqa: E402


def timed(call) -> float:
    return timed_result(call)[0]


def timed_result(call):
    began = time.perf_counter()
    result = call()
    return (time.perf_counter() - began) * 1000, result


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return f"| {name:<28} | {len(samples):>3} | {statistics.median(samples):>9.1f} | {p90:>8.1f} | {max(samples):>8.1f} |"


def sdk_cycle(server, count: int) -> list[float]:
    """The cycle peers publish: Sandbox.create() -> commands.run("echo", ["ready"]) -> kill(),
    with the real SDK, `count` times in a row (each cycle timed whole)."""
    from nullspace import Sandbox

    os.environ["NULLSPACE_API_URL"] = server.url
    os.environ["NULLSPACE_API_KEY"] = server.api_key
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        sandbox = Sandbox.create()
        result = sandbox.commands.run("echo", ["ready"])
        sandbox.kill()
        samples.append((time.perf_counter() - began) * 1000)
        assert result.stdout == "ready\n", result
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="samples per measurement")
    parser.add_argument("--cycles", type=int, default=30, help="SDK create/run/kill cycles")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    server = start_live_server(tmp)
    try:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
        )
        create_ms, kill_ms = [], []
        for _ in range(args.n):
            ms, response = timed_result(
                lambda: api.post("/v1/sandboxes", json={"template": "base"})
            )
            response.raise_for_status()
            create_ms.append(ms)
            url = f"/v1/sandboxes/{response.json()['id']}"
            kill_ms.append(timed(lambda url=url: api.delete(url).raise_for_status()))
        sandbox = api.post("/v1/sandboxes", json={"template": "base"}).json()
        body = {"command": "true", "timeout_secs": 10, "background": False}
        url = f"/v1/sandboxes/{sandbox['id']}/exec"
        api.post(url, json=body).raise_for_status()  # warm up
        exec_ms = []
        for _ in range(args.n):

            def run() -> None:
                response = api.post(url, json=body)
                response.raise_for_status()
                assert response.json()["exit_code"] == 0

            exec_ms.append(timed(run))
        shell = {**body, "command": "echo hi", "shell": True}
        shell_ms = [
            timed(lambda: api.post(url, json=shell).raise_for_status()) for _ in range(args.n)
        ]
        api.delete(f"/v1/sandboxes/{sandbox['id']}")
        cycle_ms = sdk_cycle(server, args.cycles)
        print(f"server {server.url} (uvicorn, {os.cpu_count()} cores), times in ms")
        print("| measurement                  |   n |    median |      p90 |      max |")
        print("|------------------------------|-----|-----------|----------|----------|")
        print(row("create sandbox (POST, 201)", create_ms))
        print(row("kill sandbox (DELETE)", kill_ms))
        print(row("exec `true` round trip", exec_ms))
        print(row("exec --shell `echo hi`", shell_ms))
        print(row("SDK create+run echo+kill", cycle_ms))
        ordered = sorted(cycle_ms)
        p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
        print(
            f"SDK cycle p50 {statistics.median(cycle_ms):.1f} ms, p95 {p95:.1f} ms (n={len(cycle_ms)})"
        )
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
