"""Warm-pool checkout against a cold create, through the HTTP API of a live server.

Starts the real server (manage.py serve = daphne + worker) on a free loopback port with
its own data directory, makes a warm pool of `base` (min_ready 2), then N times each
(default 20):
  - waits (untimed) until the pool is full again, then times POST /v1/sandboxes with
    `warm_pool: {id, mode: require}` until its 201 (a running sandbox, checked out);
  - times POST /v1/sandboxes without a pool (a cold create) until its 201;
each sandbox is killed afterwards (untimed). Prints median, p90 and max in ms, and the
figure docs/warm-pools.md quotes. Bounded: N creates of each kind, loopback only.

    .venv/bin/python bench/warm_pool_bench.py [-n 20]
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

FILL_TIMEOUT = 300.0


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (
        f"| {name:<26} | {len(samples):>3} | {statistics.median(samples):>9.1f} "
        f"| {p90:>8.1f} | {max(samples):>8.1f} |"
    )


def timed_create(api: httpx.Client, body: dict) -> tuple[float, dict]:
    began = time.perf_counter()
    answer = api.post("/v1/sandboxes", json=body)
    elapsed = (time.perf_counter() - began) * 1000
    if answer.status_code != 201:
        raise SystemExit(f"create failed: {answer.status_code} {answer.text}")
    return elapsed, answer.json()


def wait_full(api: httpx.Client, pool_id: str, ready: int) -> None:
    deadline = time.monotonic() + FILL_TIMEOUT
    while api.get(f"/v1/template-warm-pools/{pool_id}").json()["status"]["ready"] < ready:
        if time.monotonic() > deadline:
            raise SystemExit("the pool did not fill in time")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="samples of each kind")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="warm-pool-bench-"))
    server = start_live_server(tmp)
    try:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120
        )
        pool = api.post(
            "/v1/template-warm-pools",
            json={"template_ref": "base", "name": "bench", "min_ready": 2, "max_ready": 2},
        ).json()
        warm, cold = [], []
        for _ in range(args.n):
            wait_full(api, pool["id"], 2)
            ms, made = timed_create(
                api, {"template": "base", "warm_pool": {"id": pool["id"], "mode": "require"}}
            )
            assert made["warm_pool_checkout"]["hit"], made
            warm.append(ms)
            api.delete(f"/v1/sandboxes/{made['id']}")
            wait_full(api, pool["id"], 2)  # no fill running while the cold one is timed
            ms, made = timed_create(api, {"template": "base"})
            cold.append(ms)
            api.delete(f"/v1/sandboxes/{made['id']}")
        api.delete(f"/v1/template-warm-pools/{pool['id']}")
        print("| measurement (ms)           |   n |    median |      p90 |      max |")
        print("|----------------------------|-----|-----------|----------|----------|")
        print(row("warm-pool checkout (API)", warm))
        print(row("cold create (API)", cold))
        print(
            f"\ncheckout p50 {statistics.median(warm):.1f} ms (goal <= 20 ms); "
            f"cold p50 {statistics.median(cold):.1f} ms"
        )
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
