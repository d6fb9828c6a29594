"""SSH connect time through the relay, against a live server (docs/ssh.md).

Starts the real server (manage.py serve) on a free loopback port with its own data
directory and one sandbox, then measures, N times each (default 15):
  - first access on fresh sandboxes (starts sshd in it), alternately through the CLI and
    as the POST alone, then `ssh ... true` (its first connection);
  - `nullspace sandbox ssh-access SB` (sshd already running): the CLI's wall time;
  - `ssh ... true` with the printed command: stock OpenSSH through the relay to the
    sandbox's sshd, certificate checked, one command run;
  - both in a row (what `nullspace ssh SB -- true` costs);
  - `nullspace ssh SB -- true` itself;
  - the POST alone over HTTP (the server's share), and `nullspace --version` (the CLI's
    own start-up, most of the rest).
Prints median, p90 and max in ms. Bounded: N runs each, loopback only.

    .venv/bin/python bench/ssh_bench.py [-n 15] [--first 6]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from tests.live import remove_tree, start_live_server  # noqa: E402

TIMEOUT = 120


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    began = time.perf_counter()
    result = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    ms = (time.perf_counter() - began) * 1000
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed ({result.returncode}): {result.stderr}")
    return ms, result.stdout


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (
        f"| {name:<48} | {len(samples):>3} | {statistics.median(samples):>8.0f} "
        f"| {p90:>8.0f} | {max(samples):>8.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="samples per measurement (max 100)")
    parser.add_argument("--first", type=int, default=6, help="fresh sandboxes (max 20)")
    args = parser.parse_args()
    n, first = max(1, min(args.n, 100)), max(2, min(args.first, 20))
    tmp = Path(tempfile.mkdtemp(prefix="ssh-bench-"))
    server = start_live_server(tmp)
    env = server.cli_env()
    cli = [str(Path(sys.executable).parent / "nullspace")]
    cwd = server.data_dir

    def new_sandbox() -> str:
        return server.new_sandbox("--timeout", "900")

    api = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
    )

    def post_access(sandbox: str) -> float:
        public_key = (cwd / ".nullspace/ssh/nullspace_ssh_ed25519.pub").read_text().strip()
        began = time.perf_counter()
        answer = api.post(f"/v1/sandboxes/{sandbox}/ssh-access", json={"public_key": public_key})
        answer.raise_for_status()
        return (time.perf_counter() - began) * 1000

    try:
        first_access, first_http, first_ssh = [], [], []
        for index in range(first):
            sandbox = new_sandbox()
            if index % 2:  # alternate: the CLI's first access, or the POST's alone
                first_http.append(post_access(sandbox))
                ms, printed = timed(
                    [*cli, "sandbox", "ssh-access", sandbox, "--print-command"], env, cwd
                )
            else:
                ms, printed = timed(
                    [*cli, "sandbox", "ssh-access", sandbox, "--print-command"], env, cwd
                )
                first_access.append(ms)
            first_ssh.append(timed([*shlex.split(printed), "true"], env, cwd)[0])
            server.cli("sandbox", "kill", sandbox)

        sandbox = new_sandbox()
        timed([*cli, "sandbox", "ssh-access", sandbox], env, cwd)  # sshd up once
        access, connect, both, via_cli = [], [], [], []
        for _ in range(n):
            ms_access, printed = timed(
                [*cli, "sandbox", "ssh-access", sandbox, "--print-command"], env, cwd
            )
            ms_ssh = timed([*shlex.split(printed), "true"], env, cwd)[0]
            access.append(ms_access)
            connect.append(ms_ssh)
            both.append(ms_access + ms_ssh)
        for _ in range(n):
            via_cli.append(timed([*cli, "ssh", sandbox, "--", "true"], env, cwd)[0])
        http_only = [post_access(sandbox) for _ in range(n)]
        server.cli("sandbox", "kill", sandbox)
        startup = [timed([*cli, "--version"], env, cwd)[0] for _ in range(n)]

        print(f"SSH connect time, ms (load average {os.getloadavg()[0]:.1f})\n")
        print(f"| {'step':<48} | {'n':>3} | {'p50':>8} | {'p90':>8} | {'max':>8} |")
        print(f"|{'-' * 50}|{'-' * 5}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
        print(row("ssh-access, first (starts sshd)", first_access))
        print(row("POST .../ssh-access, first (HTTP, starts sshd)", first_http))
        print(row("ssh ... true, first connection", first_ssh))
        print(row("ssh-access (sshd running)", access))
        print(row("ssh ... true (printed command)", connect))
        print(row("ssh-access + ssh ... true", both))
        print(row("nullspace ssh SB -- true", via_cli))
        print(row("POST .../ssh-access alone (HTTP, no CLI)", http_only))
        print(row("nullspace --version (the CLI's start-up)", startup))
    finally:
        api.close()
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
