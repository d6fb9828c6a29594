"""Agent deployments against a live server: deploy-to-first-log-line, and the overhead of a
no-op job from `run` to `succeeded` with and without a cached artifact.

Starts the real server (manage.py serve) on a loopback port with its own data directory,
then measures, N times each (default 10):

  - deploy -> first log line: `nullspace agent deploy` (the real CLI: bundle, version,
    upload) then POST /runs, until the job's first stdout line is readable from the logs
    route (polled every 20 ms);
  - no-op job (`entrypoint = "true"`) from POST /runs to `succeeded`, for:
      no install           the template, nothing to install;
      install, no cache    install = `python3 -m venv --copies .deps` in every run (auto, cache_miss);
      install, cached      the same after `deploy --rebuild` (the artifact's snapshot);
  - the floor: the same work by hand through /v1/sandboxes (create, exec `true`, kill).

Each cell is measured client-side (wall time, polling every 20 ms) and server-side
(the run's created_at -> completed_at). Prints a Markdown table of median/p90/max.
Bounded: N runs per cell, loopback only.

    .venv/bin/python bench/agents_bench.py [-n 10]
"""

from __future__ import annotations

import argparse
import json
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

from tests.live import VENV_BIN, LiveServer, remove_tree, start_live_server  # noqa: E402

POLL = 0.02
RUN_TIMEOUT = 120
INSTALL = "python3 -m venv --copies .deps"


def stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9 + 0.5) - 1)]
    return statistics.median(ordered), p90, ordered[-1]


def row(name: str, samples: list[float], server: list[float] | None = None) -> str:
    med, p90, top = stats(samples)
    cells = f"| {name:<36} | {len(samples):>3} | {med:>8.0f} | {p90:>8.0f} | {top:>8.0f} |"
    if server:
        cells += f" {stats(server)[0]:>10.0f} |"
    else:
        cells += f" {'':>10} |"
    return cells


def project(root: Path, name: str, *, install: str | None, entrypoint: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    if install:  # (without one, the CLI would detect `pip install -r requirements.txt`)
        (path / "requirements.txt").write_text("# no packages: the install step makes a venv\n")
    lines = [f'name = "{name}"', 'mode = "job"', f'entrypoint = "{entrypoint}"']
    if install:
        lines.insert(2, f'install = "{install}"')
    (path / "nullspace.agent.toml").write_text("\n".join(lines) + "\n")
    return path


def deploy(server: LiveServer, path: Path, *flags: str) -> dict:
    out = subprocess.run(
        [
            str(VENV_BIN / "nullspace"),
            "agent",
            "deploy",
            "--project-dir",
            str(path),
            *flags,
            "--json",
        ],
        env=server.cli_env(),
        cwd=server.data_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def wait_run(api: httpx.Client, deployment: str, run: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        body = api.get(f"/v1/agent-deployments/{deployment}/runs/{run}").json()
        if body["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return body
        time.sleep(POLL)
    raise RuntimeError(f"run {run} did not end in {RUN_TIMEOUT} s")


def run_once(api: httpx.Client, deployment: str) -> tuple[float, float]:
    began = time.perf_counter()
    run = api.post(f"/v1/agent-deployments/{deployment}/runs", json={"input": {}}).json()
    done = wait_run(api, deployment, run["id"])
    wall = (time.perf_counter() - began) * 1000
    if done["status"] != "succeeded":
        raise RuntimeError(f"run {run['id']} {done['status']}: {done.get('failure_reason')}")
    server = (parse(done["completed_at"]) - parse(done["created_at"])).total_seconds() * 1000
    return wall, server


def first_line(server: LiveServer, api: httpx.Client, path: Path) -> tuple[float, float]:
    """(deploy -> first line, run -> first line) in ms."""
    began = time.perf_counter()
    deployed = deploy(server, path)
    deployment = deployed["deployment"]["id"]
    run_began = time.perf_counter()
    run = api.post(f"/v1/agent-deployments/{deployment}/runs", json={"input": {}}).json()
    logs_path = f"/v1/agent-deployments/{deployment}/runs/{run['id']}/logs"
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if any(e["source"] == "stdout" for e in api.get(logs_path).json()["events"]):
            now = time.perf_counter()
            wait_run(api, deployment, run["id"])
            return (now - began) * 1000, (now - run_began) * 1000
        time.sleep(POLL)
    raise RuntimeError("no log line")


def by_hand(api: httpx.Client) -> float:
    began = time.perf_counter()
    sandbox = api.post("/v1/sandboxes", json={"template": "base"}).json()
    api.post(f"/v1/sandboxes/{sandbox['id']}/exec", json={"command": "true", "shell": True})
    api.delete(f"/v1/sandboxes/{sandbox['id']}")
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="samples per cell")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    server = start_live_server(tmp, API_RATE_LIMIT_PER_MINUTE="100000")
    try:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
        )
        projects = tmp / "projects"
        hello = project(projects, "bench-hello", install=None, entrypoint="echo first line")
        noop = project(projects, "bench-noop", install=None, entrypoint="true")
        heavy = project(projects, "bench-install", install=INSTALL, entrypoint="true")

        first = [first_line(server, api, hello) for _ in range(args.n)]
        hand = [by_hand(api) for _ in range(args.n)]
        noop_id = deploy(server, noop)["deployment"]["id"]
        plain = [run_once(api, noop_id) for _ in range(args.n)]
        heavy_id = deploy(server, heavy)["deployment"]["id"]
        uncached = [run_once(api, heavy_id) for _ in range(args.n)]
        rebuilt = deploy(server, heavy, "--rebuild")
        version = rebuilt["version"]["id"]
        build_began = time.perf_counter()
        while True:
            built = api.get(f"/v1/agent-deployments/{heavy_id}/versions/{version}").json()
            if built["cache_summary"]["artifact_ready"]:
                break
            if built["build_summary"]["status"] == "failed":
                raise RuntimeError(f"the artifact build failed: {built['build_summary']}")
            if time.perf_counter() - build_began > RUN_TIMEOUT:
                raise RuntimeError("the artifact build did not finish")
            time.sleep(0.1)
        build_ms = (time.perf_counter() - build_began) * 1000
        cached = [run_once(api, heavy_id) for _ in range(args.n)]

        load = os.getloadavg()
        print(f"\nagents bench, n={args.n}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}")  # fmt: skip
        print(
            "\n| measurement (ms)                    |   n |   median |      p90 |      max | server p50 |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        print(row("deploy (CLI) -> first log line", [d for d, _ in first]))
        print(row("  of which run -> first log line", [r for _, r in first]))
        print(row("by hand: create + exec + kill", hand))
        print(row("no-op job, no install", [w for w, _ in plain], [s for _, s in plain]))
        print(
            row("no-op job, install, no cache", [w for w, _ in uncached], [s for _, s in uncached])
        )
        print(
            row(
                "no-op job, install, cached artifact",
                [w for w, _ in cached],
                [s for _, s in cached],
            )
        )
        print(
            f"\nartifact build (deploy --rebuild until ready): {build_ms:.0f} ms; install = `{INSTALL}`"
        )
        ratio = stats([w for w, _ in uncached])[0] / stats([w for w, _ in cached])[0]
        print(f"cached vs uncached no-op job (median wall): {ratio:.1f}x faster")
        overhead = stats([w for w, _ in plain])[0] / stats(hand)[0]
        print(
            f"no-op job (no install) vs the same work by hand through /v1/sandboxes: {overhead:.2f}x"
        )
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
