"""A gateway stack for live tests: the default server (`manage.py serve`) and the fleet
entry (`uvicorn gateway.asgi:application` with our protocol) on one database, with the
real test upstreams running in a thread of the test process.

Small limits are set through the environment, so every limit can be hit in a second or two.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.gateway import upstreams
from tests.live import ROOT, VENV_BIN, LiveServer, free_port, start_live_server

LIMITS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "HTTP_KEEPALIVE_SECONDS": "1",
    "HTTP_BODY_READ_TIMEOUT_SECONDS": "1",
    "HTTP_DRAIN_TIMEOUT_SECONDS": "2",
    "HTTP_MAX_HEADERS": "40",
    "HTTP_MAX_HEADER_BYTES": "16384",
    "PREVIEW_CONNECT_TIMEOUT_SECONDS": "1",
    "PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS": "2",
    "PREVIEW_WS_OPEN_TIMEOUT_SECONDS": "1",
    "PREVIEW_MAX_RESPONSE_HEADER_BYTES": "65536",
    "WS_MAX_MESSAGE_BYTES": "65536",
}

GRANT = """
from console.actor import SYSTEM
from console.models import Project, Sandbox, SandboxStatus
from console.previews import service as previews
sandbox = Sandbox.objects.filter(public_id="{sandbox_id}").first() or Sandbox.objects.create(
    project=Project.objects.get(name="main"), status=SandboxStatus.RUNNING)
grant, raw = previews.create_grant(sandbox, 3000, expires_in_seconds=max(60, {seconds}), actor=SYSTEM)
if {seconds} < 60:  # shorter than the API allows, for expiry tests
    from datetime import timedelta
    from django.utils import timezone
    type(grant).objects.filter(pk=grant.pk).update(
        expires_at=timezone.now() + timedelta(seconds={seconds}))
print(sandbox.public_id, sandbox.host_label, grant.public_id, raw["http_port"], raw["websocket_port"])
"""
REVOKE = """
from console.actor import SYSTEM
from console.models import PreviewGrant
from console.previews import service as previews
previews.revoke_grant(PreviewGrant.objects.get(public_id="{grant_id}"), actor=SYSTEM)
"""


class Upstreams:
    """The aiohttp app and the websockets echo server, on a loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http_runner, self.http_port = self.run(upstreams.start_http())
        self.ws_server, self.ws_port = self.run(upstreams.start_websocket())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.ws_server.close()
        self.run(self.http_runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Grant:
    sandbox_id: str
    label: str
    grant_id: str
    http_token: str
    ws_token: str

    def host(self, port: int = 3000) -> str:
        return f"{port}-{self.label}.preview.localhost"


@dataclass
class Stack:
    live: LiveServer
    fleet: subprocess.Popen
    fleet_port: int
    routes: Path
    upstreams: Upstreams
    route_map: dict[str, str] = field(default_factory=dict)

    def port(self, entry: str) -> int:
        return self.live.port if entry == "default" else self.fleet_port

    def grant(self, sandbox_id: str = "-", seconds: int = 600) -> Grant:
        out = self.live.manage(
            "shell", "-c", GRANT.format(sandbox_id=sandbox_id, seconds=int(seconds))
        )
        grant = Grant(*out.split()[-5:])
        self.route(grant.sandbox_id, 3000, self.upstreams.http_port)
        return grant

    def route(self, sandbox_id: str, port: int, to: int) -> None:
        self.route_map[f"{sandbox_id}:{port}"] = f"127.0.0.1:{to}"
        self.routes.write_text(json.dumps(self.route_map))

    def revoke(self, grant: Grant) -> None:
        self.live.manage("shell", "-c", REVOKE.format(grant_id=grant.grant_id))

    def cookie(self, entry: str, grant: Grant) -> str:
        """Trade the link's edge_token for the gateway's cookie: `name=value`."""
        response = httpx.get(
            f"http://127.0.0.1:{self.port(entry)}/?edge_token={grant.http_token}",
            headers={"Host": grant.host()},
        )
        assert response.status_code == 303, response.text
        return response.headers["set-cookie"].split(";")[0]

    def stop(self) -> None:
        if self.fleet.poll() is None:
            self.fleet.terminate()
            try:
                self.fleet.wait(10)
            except subprocess.TimeoutExpired:
                self.fleet.kill()
                self.fleet.wait(5)
        self.live.stop()
        self.upstreams.stop()


def start_stack(tmp_path: Path, **extra_env: str) -> Stack:
    routes = tmp_path / "routes.json"
    routes.write_text("{}")
    env = {
        **LIMITS,
        "PREVIEW_UPSTREAM_RESOLVER": "tests.gateway.upstreams.resolve",
        "TEST_PREVIEW_UPSTREAMS": f"@{routes}",
        **extra_env,
    }
    live = start_live_server(tmp_path, **env)
    port = free_port()
    log = open(tmp_path / "fleet.log", "wb")
    fleet = subprocess.Popen(
        [
            str(VENV_BIN / "uvicorn"), "gateway.asgi:application",
            "--http", "gateway.httpserver:HttpProtocol", "--ws", "websockets-sansio",
            "--loop", "uvloop", "--no-access-log", "--no-proxy-headers",
            "--timeout-keep-alive", LIMITS["HTTP_KEEPALIVE_SECONDS"],
            "--ws-max-size", LIMITS["WS_MAX_MESSAGE_BYTES"],
            "--host", "127.0.0.1", "--port", str(port),
        ],
        cwd=ROOT, env=live.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stack = Stack(live, fleet, port, routes, Upstreams())
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if fleet.poll() is not None or time.monotonic() > deadline:
                stack.stop()
                raise RuntimeError((tmp_path / "fleet.log").read_text()) from None
            time.sleep(0.2)
    return stack


def raw_exchange(port: int, data: bytes, *, timeout: float = 5) -> bytes:
    """Send bytes, read until the server closes (or the timeout): everything it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)
