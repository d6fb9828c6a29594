"""Code interpreter round trips through the HTTP API, against a live server.

Starts the real server (manage.py serve) on a free loopback port with its own data
directory, creates one sandbox of the `code-interpreter` template, then measures:
  - the first run (the default context's kernel starts: cold);
  - N runs of `print(1)` (default 50) through POST /v1/sandboxes/{id}/code/execute, each
    timed from the request until the stream ends (the whole answer read);
  - N times to the first stdout event of `print(1)` (what a streaming client waits for);
  - N runs of `print(1)` with the real SDK (`Sandbox.run_code`), which adds its own
    connection handling and parsing.
Prints p50, p95 and max in milliseconds. Bounded: N requests each, loopback only.

    .venv/bin/python bench/code_bench.py [-n 50]
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


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * fraction) - 1))]


def row(name: str, samples: list[float]) -> str:
    return (
        f"| {name:<36} | {len(samples):>3} | {statistics.median(samples):>8.1f} "
        f"| {percentile(samples, 0.95):>8.1f} | {max(samples):>8.1f} |"
    )


def execute(api: httpx.Client, sandbox_id: str, code: str, *, first_stdout: bool) -> float:
    """Milliseconds until the stream ends (or, with first_stdout, until its first stdout)."""
    began = time.perf_counter()
    stdout = []
    with api.stream(
        "POST", f"/v1/sandboxes/{sandbox_id}/code/execute", json={"code": code}
    ) as response:
        response.raise_for_status()
        lines = response.iter_lines()
        for line in lines:
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "stdout":
                stdout.append(event["text"])
                if first_stdout:
                    elapsed = (time.perf_counter() - began) * 1000
                    for _rest in lines:  # the run ends before the next one starts
                        pass
                    return elapsed
    elapsed = (time.perf_counter() - began) * 1000
    assert stdout == ["1\n"], stdout
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="samples per measurement")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="code-bench-"))
    server = start_live_server(tmp)
    try:
        api = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=120,
        )
        created = api.post("/v1/sandboxes", json={"template": "code-interpreter"})
        created.raise_for_status()
        sandbox_id = created.json()["id"]
        cold = execute(api, sandbox_id, "print(1)", first_stdout=False)
        warm = [execute(api, sandbox_id, "print(1)", first_stdout=False) for _ in range(args.n)]
        first = [execute(api, sandbox_id, "print(1)", first_stdout=True) for _ in range(args.n)]

        from nullspace import Sandbox

        sandbox = Sandbox.connect(sandbox_id, api_key=server.api_key, base_url=server.url)
        sdk = []
        for _ in range(args.n):
            began = time.perf_counter()
            execution = sandbox.run_code("print(1)")
            sdk.append((time.perf_counter() - began) * 1000)
            assert execution.logs.stdout == ["1\n"], execution
        sandbox.close()
        api.delete(f"/v1/sandboxes/{sandbox_id}")

        print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
        print("| measurement                          |   n |  p50 ms |  p95 ms |  max ms |")
        print("|--------------------------------------|-----|---------|---------|---------|")
        print(row("first run (kernel start)", [cold]))
        print(row("execute print(1), whole stream", warm))
        print(row("execute print(1), first stdout", first))
        print(row("SDK run_code('print(1)')", sdk))
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
