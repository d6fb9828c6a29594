"""How much server memory one process's large output costs, against a live server.

Starts the real server (manage.py serve) on a free loopback port, creates a sandbox and
runs a command printing SIZE MiB (default 67) three ways: a blocking `exec` over HTTP,
the exec WebSocket read to the end, and the WebSocket read slowly (a client that stalls).
Prints the server's resident memory (VmRSS) before and its peak (VmHWM) after each, and
what the client received. Bounded: three commands, loopback only.

    .venv/bin/python bench/exec_output_memory.py [--mib 67]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from tests.live import remove_tree, start_live_server  # noqa: E402


def memory_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def stream(url: str, key: str, sandbox_id: str, command: str, pause: float) -> dict:
    ws_url = url.replace("http://", "ws://") + f"/v1/sandboxes/{sandbox_id}/ws?channel=exec"
    got = {"bytes": 0, "truncated_frame": False, "exit": None}
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "exec_start", "command": command, "shell": True}))
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "exec_stdout":
                got["bytes"] += len(frame["data"])
                if pause:
                    await asyncio.sleep(pause)
            elif frame["type"] == "exec_truncated":
                got["truncated_frame"] = True
            elif frame["type"] in ("exec_exit", "error"):
                got["exit"] = frame
                break
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=67)
    args = parser.parse_args()
    command = f"head -c {args.mib * 1024 * 1024} /dev/zero | tr '\\0' x"
    tmp = Path(tempfile.mkdtemp(prefix="exec-mem-"))
    server = start_live_server(tmp, API_RATE_BURST="100000")
    try:
        pid = server.process.pid
        http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=300
        )
        sandbox_id = http.post("/v1/sandboxes", json={}).json()["id"]
        print(f"server pid {pid}; command prints {args.mib} MiB")
        print(f"{'run':<28}{'RSS before':>12}{'peak after':>12}  client received")
        before = memory_mib(pid)[0]
        body = http.post(
            f"/v1/sandboxes/{sandbox_id}/exec", json={"command": command, "shell": True}
        ).json()
        got = f"{len(body['stdout']) / 2**20:.1f} MiB, truncated={body.get('truncated', False)}"
        print(f"{'blocking exec (HTTP)':<28}{before:>10.0f} M{memory_mib(pid)[1]:>10.0f} M  {got}")
        for label, pause in (("WebSocket, fast reader", 0.0), ("WebSocket, slow reader", 0.002)):
            before = memory_mib(pid)[0]
            result = asyncio.run(stream(server.url, server.api_key, sandbox_id, command, pause))
            got = (f"{result['bytes'] / 2**20:.1f} MiB, exec_truncated={result['truncated_frame']}, "
                   f"exit={result['exit']}")  # fmt: skip
            print(f"{label:<28}{before:>10.0f} M{memory_mib(pid)[1]:>10.0f} M  {got}")
    finally:
        server.stop()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
