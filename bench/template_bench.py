"""Templates against a live server: a cold build, a cached rebuild, and sandbox create
from a custom template through the API.

Starts the real server (manage.py serve) on a loopback port with its own data directory,
then measures:

  - cold build: `debian:bookworm` + apt_install git + a run step, with skip_cache (every
    step runs in its build sandbox and is stored as a layer), N_BUILD times;
  - cached rebuild: the same request without skip_cache (every layer a cache hit, no
    sandbox runs), N_BUILD times;
  - create from the custom template: POST /v1/sandboxes {"template": NAME} (the sandbox
    on the template's layers), then DELETE, N_CREATE times; the same for `base`.

Builds are timed from the request to the `end` entry of the foreground SSE stream.
Prints a Markdown table of median/p90/max in milliseconds. Bounded: N runs per cell,
loopback only, one sandbox at a time.

    .venv/bin/python bench/template_bench.py [--builds 3] [--creates 20]
"""

from __future__ import annotations

import argparse
import json
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

NAME = "bench-git"


def stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9 + 0.5) - 1)]
    return statistics.median(ordered), p90, ordered[-1]


def row(name: str, samples: list[float]) -> str:
    med, p90, top = stats(samples)
    return f"| {name:<40} | {len(samples):>3} | {med:>8.0f} | {p90:>8.0f} | {top:>8.0f} |"


def build(client: httpx.Client, *, skip_cache: bool) -> tuple[float, dict]:
    body = {
        "name": NAME,
        "base_image": "debian:bookworm",
        "steps": [
            {"action": "apt_install", "packages": ["git"]},
            {"action": "run", "command": "git --version > /etc/git-version"},
        ],
    }
    if skip_cache:
        body["skip_cache"] = True
    started = time.perf_counter()
    end: dict = {}
    with client.stream("POST", "/v1/templates/build", json=body, timeout=1800) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            entry = json.loads(line[6:])
            if entry["kind"] in ("end", "error", "cancelled"):
                end = entry
                break
    elapsed = (time.perf_counter() - started) * 1000
    if end.get("kind") != "end":
        raise SystemExit(f"build did not end well: {end}")
    return elapsed, end


def creates(client: httpx.Client, template: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        made = client.post("/v1/sandboxes", json={"template": template}, timeout=120)
        samples.append((time.perf_counter() - started) * 1000)
        made.raise_for_status()
        client.delete(f"/v1/sandboxes/{made.json()['id']}", timeout=120)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--creates", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="template-bench-"))
    server = start_live_server(tmp)
    try:
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}
        )
        cold = [build(client, skip_cache=True)[0] for _ in range(args.builds)]
        cached = [build(client, skip_cache=False)[0] for _ in range(args.builds)]
        creates(client, NAME, 2)  # warm: the first create of a stack reads its layers
        custom = creates(client, NAME, args.creates)
        base = creates(client, "base", args.creates)
        print("| measurement (ms)                         |   n |   median |      p90 |      max |")
        print("|------------------------------------------|-----|----------|----------|----------|")
        print(row("cold build: bookworm + apt_install git", cold))
        print(row("cached rebuild (all layers hit)", cached))
        print(row(f"create from custom template ({NAME})", custom))
        print(row("create from builtin base", base))
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
